"""Pictures for people: image beside its interpretation, regions outlined, with a legend."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from landsentry.models.vocabulary.classes import CLASSES, palette

LEGEND_ROW = 22


def colorize(classes: np.ndarray, image: np.ndarray | None = None, alpha: float = 0.5) -> np.ndarray:
    """H x W class ids -> H x W x 3 colours, blended over an RGB image when given (nodata stays image)."""
    colours = palette()[classes].astype(np.float32)
    known = classes < len(CLASSES)
    if image is None:
        return colours.astype(np.uint8)
    out = image.astype(np.float32).copy()
    out[known] = (1 - alpha) * out[known] + alpha * colours[known]
    return out.astype(np.uint8)


def legend(width: int, entries: list[tuple[str, tuple[int, int, int]]]) -> Image.Image:
    """A strip of colour swatches with names, wrapped to the given width."""
    font = ImageFont.load_default()
    per_row = max(1, width // 230)
    rows = (len(entries) + per_row - 1) // per_row
    strip = Image.new("RGB", (width, rows * LEGEND_ROW + 6), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, (name, colour) in enumerate(entries):
        x, y = 6 + (i % per_row) * 230, 4 + (i // per_row) * LEGEND_ROW
        draw.rectangle([x, y, x + 16, y + 14], fill=colour, outline=(0, 0, 0))
        draw.text((x + 22, y + 1), name, fill=(0, 0, 0), font=font)
    return strip


def side_by_side(panels: list[np.ndarray], titles: list[str], legend_entries: list[tuple[str, tuple[int, int, int]]]) -> Image.Image:
    """Panels (H x W x 3, same size) in a row with titles above and a legend below."""
    h, w = panels[0].shape[:2]
    gap, title_h = 8, 20
    width = len(panels) * w + (len(panels) - 1) * gap
    key = legend(width, legend_entries)
    canvas = Image.new("RGB", (width, title_h + h + key.height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (panel, title) in enumerate(zip(panels, titles)):
        x = i * (w + gap)
        canvas.paste(Image.fromarray(panel), (x, title_h))
        draw.text((x + 4, 4), title, fill=(0, 0, 0), font=ImageFont.load_default())
    canvas.paste(key, (0, title_h + h))
    return canvas


def class_legend() -> list[tuple[str, tuple[int, int, int]]]:
    return [(c.title, c.color) for c in CLASSES]
