"""What `landsentry bench-adapt` reports: a Markdown table, a JSON file and a PNG of IoU per class before and after, per k."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from landsentry.models.vocabulary.classes import CLASS_NAMES

BEFORE, AFTER = (150, 150, 150), (31, 119, 180)


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _scored_classes(rows: list[dict]) -> list[str]:
    """Classes that have an IoU before or after in some row (a road-only source: just road)."""
    return [c for c in CLASS_NAMES if any(r[w]["iou"].get(c) is not None for r in rows for w in ("before", "after"))]


def _check(row: dict, name: str) -> str:
    check = (row.get("checks") or {}).get(name) or {}
    parent, new = (check.get("parent") or {}).get("miou"), (check.get("new") or {}).get("miou")
    return "–" if parent is None and new is None else f"{_f(parent)} → {_f(new)}"


def markdown(rows: list[dict], header: bool = True) -> str:
    """One row per k: mIoU and each scored class's IoU as before → after, time, speed and the version's own checks."""
    if not rows:
        return "(no rows)"
    classes = _scored_classes(rows)
    lines = []
    if header:
        lines += ["| k | mIoU before → after | gain | " + " | ".join(classes) + " | minutes | samples/s | "
                  "held-out samples (parent → new) | parent's validation (parent → new) |",
                  "|---|---|---|" + "---|" * len(classes) + "---|---|---|---|"]
    for r in rows:
        cells = [f"{_f(r['before']['iou'].get(c))} → {_f(r['after']['iou'].get(c))}" for c in classes]
        gain = "–" if r["gain"] is None else f"{r['gain']:+.3f}"
        lines.append(f"| {r['k']} | {_f(r['before']['miou'])} → {_f(r['after']['miou'])} | {gain} | " + " | ".join(cells)
                     + f" | {r['minutes']:.1f} | {'–' if r['samples_per_s'] is None else format(r['samples_per_s'], '.1f')} | "
                     + f"{_check(r, 'samples')} | {_check(r, 'parent_validation')} |")
    return "\n".join(lines)


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))


def plot(path: Path, report: dict, panel: tuple[int, int] = (260, 260)) -> Path:
    """One panel per k: bars of IoU per class (grey before, blue after) and mIoU, on a 0-1 scale."""
    rows = report["rows"]
    classes = _scored_classes(rows) if rows else []
    labels = [*classes, "mIoU"]
    w, h = panel
    img = Image.new("RGB", (max(2, len(rows)) * w + 20, h + 70), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((8, 4), f"bench-adapt: {report['data']} from {Path(report['base']).parent.name}/{Path(report['base']).name}",
              fill="black", font=font)
    draw.text((8, 18), "grey: before, blue: after (IoU 0-1)", fill="black", font=font)
    top, bottom = 50, 50 + h - 40
    for i, row in enumerate(rows):
        x0 = 10 + i * w
        draw.rectangle([x0, top, x0 + w - 10, bottom], outline=(200, 200, 200))
        draw.text((x0 + 4, top + 2), f"k = {row['k']}  ({row['minutes']:.1f} min)", fill="black", font=font)
        slot = (w - 20) / max(1, len(labels))
        for j, name in enumerate(labels):
            values = [(row[when]["miou"] if name == "mIoU" else row[when]["iou"].get(name)) for when in ("before", "after")]
            for b, (value, colour) in enumerate(zip(values, (BEFORE, AFTER))):
                if value is None:
                    continue
                bx = x0 + 5 + j * slot + b * slot * 0.42
                draw.rectangle([bx, bottom - value * (bottom - top - 16), bx + slot * 0.4, bottom], fill=colour)
            draw.text((x0 + 5 + j * slot, bottom + 4 + (j % 2) * 11), name[:6], fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
