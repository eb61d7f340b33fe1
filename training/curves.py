"""Training-curve PNG drawn with Pillow (no plotting framework needed for two lines)."""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SERIES_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def plot_curves(path: Path, series: dict[str, list[float]], title: str, size: tuple[int, int] = (720, 420)) -> Path:
    """One panel per series (x = epoch), side by side, each scaled to its own range."""
    names = [n for n, v in series.items() if any(x == x for x in v)]  # skip all-NaN series
    width, height = size
    panel_w = width // max(1, len(names))
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((8, 4), title, fill="black", font=font)
    for k, name in enumerate(names):
        values = [v for v in series[name]]
        finite = [v for v in values if math.isfinite(v)]  # a diverged run's inf/NaN losses are left out, not plotted
        if not finite:
            continue
        lo, hi = min(finite), max(finite)
        span = hi - lo if hi - lo > 0 else 1.0  # one value, or equal ones (even huge ones): a flat line
        x0, y0, x1, y1 = k * panel_w + 50, 40, (k + 1) * panel_w - 15, height - 40
        draw.rectangle([x0, y0, x1, y1], outline=(160, 160, 160))
        draw.text((x0, y0 - 16), name, fill=SERIES_COLOURS[k % 4], font=font)
        draw.text((x0 - 46, y0), f"{hi:.3f}", fill="black", font=font)
        draw.text((x0 - 46, y1 - 10), f"{lo:.3f}", fill="black", font=font)
        n = len(values)
        points = [
            (x0 + (x1 - x0) * (i / max(1, n - 1)), y1 - (y1 - y0) * ((v - lo) / span))
            for i, v in enumerate(values) if math.isfinite(v)
        ]
        if len(points) > 1:
            draw.line(points, fill=SERIES_COLOURS[k % 4], width=2)
        for px, py in points:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=SERIES_COLOURS[k % 4])
        draw.text((x0, y1 + 6), f"epoch 1..{n}", fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
