"""Overlay pictures for people: the image beside its classes (one date), or before | after | flags (two dates)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw
from rasterio.enums import Resampling

from landsentry.models.analysis.flags import Flag
from landsentry.models.analysis.pipeline import preview_shape
from landsentry.models.io.raster import RasterInfo
from landsentry.models.io.render import class_legend, colorize, side_by_side
from landsentry.models.vocabulary.kinds import BY_CODE, KINDS, kind_of

SUSPECT_COLOUR = (255, 0, 255)


def _decimated(path: Path, shape: tuple[int, int]) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1, out_shape=shape, resampling=Resampling.nearest)


def class_overlay(source, class_path: Path) -> Image.Image:
    """Image | image with class colours, decimated to at most PREVIEW_SIDE pixels a side."""
    shape = preview_shape(source.info)
    rgb = source.preview(shape)
    return side_by_side([rgb, colorize(_decimated(class_path, shape), rgb)], ["image", "classes"], class_legend())


def flag_overlay(before, after, info: RasterInfo, change_path: Path, flags: list[Flag]) -> Image.Image:
    """before | after | flags over the after image (outlined by kind; suspected illegal thick, with a magenta marker)."""
    shape = preview_shape(info)
    before_rgb, after_rgb = before.preview(shape), after.preview(shape)
    codes = _decimated(change_path, shape)
    tint = after_rgb.astype(np.float32)
    for code, kind in BY_CODE.items():
        sel = codes == code
        tint[sel] = 0.6 * tint[sel] + 0.4 * np.array(kind.change_colour, np.float32)
    panel = Image.fromarray(tint.astype(np.uint8))
    draw = ImageDraw.Draw(panel)
    sx, sy = shape[1] / info.width, shape[0] / info.height
    inverse = ~info.transform

    def to_px(coords) -> list[tuple[float, float]]:
        out = []
        for x, y in coords:
            c, r = inverse @ (x, y)
            out.append((c * sx, r * sy))
        return out

    for flag in sorted(flags, key=lambda f: f.suspected_illegal):  # suspects drawn last, on top
        colour = kind_of(flag.kind).change_colour
        width = 3 if flag.suspected_illegal else 1
        for poly in getattr(flag.geometry, "geoms", [flag.geometry]):
            for ring in [poly.exterior, *poly.interiors]:
                draw.line(to_px(ring.coords), fill=colour, width=width)
        if flag.suspected_illegal:
            (cx, cy), = to_px(flag.geometry.representative_point().coords)
            draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=SUSPECT_COLOUR, outline=(0, 0, 0))
    entries = [(k.new_name.replace("_", " "), k.change_colour) for k in KINDS]
    entries.append(("suspected illegal (thick outline, dot)", SUSPECT_COLOUR))
    return side_by_side([before_rgb, after_rgb, np.asarray(panel)], ["before", "after", "flags (new since before)"], entries)
