"""The scene a bench run measures: a given file, or a mosaic of a real image grown to any size, written in strips."""
from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from landsentry.models.inference.tiling import window_starts
from landsentry.models.io.header import probe
from landsentry.models.vocabulary.errors import InputError

SAMPLE_IMAGE = Path(__file__).resolve().parents[2] / "sample_tiles" / "spacenet_atlanta_pan.tif"
DEFAULT_MEGAPIXELS = 16.0
MAX_SOURCE_PIXELS = 64_000_000


def mosaic_side(megapixels: float) -> int:
    """Side of the square scene with that many megapixels (a multiple of 16)."""
    side = int(round(math.sqrt(megapixels * 1e6) / 16)) * 16
    return max(side, 64)


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Indices into [0, n) folding back and forth (0..n-1, n-1..0, ...), so copies join without seams."""
    period = 2 * n
    i = index % period
    return np.where(i < n, i, period - 1 - i)


def make_mosaic(source: Path, out: Path, megapixels: float, gsd: float, strip: int = 512) -> Path:
    """A square GeoTIFF of about `megapixels`, the source image mirrored across it, written strip by strip.

    Keeps the source's bands and data type (so the bench reads what a user's file holds) and its
    CRS (EPSG:32616 where it has none), with `gsd` metre pixels. Memory: the source plus one strip.
    """
    side = mosaic_side(megapixels)
    with rasterio.open(source) as src:
        if src.width * src.height > MAX_SOURCE_PIXELS:  # the source is held in memory while the mosaic is written
            raise InputError(f"--source {source.name} has {src.width}x{src.height} pixels; a mosaic source may have "
                             f"at most {MAX_SOURCE_PIXELS / 1e6:g} Mpx (measure a big file directly: landsentry bench FILE)")
        data = src.read()
        crs = src.crs if src.crs is not None and not src.crs.is_geographic else CRS.from_epsg(32616)
        x0, y0 = (src.transform.c, src.transform.f) if src.crs is not None and not src.crs.is_geographic else (500000.0, 3700000.0)
        nodata = src.nodata
    count, h, w = data.shape
    profile = {"driver": "GTiff", "width": side, "height": side, "count": count, "dtype": str(data.dtype), "crs": crs,
               "transform": Affine(gsd, 0, x0, 0, -gsd, y0), "tiled": True, "blockxsize": 512, "blockysize": 512,
               "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    if nodata is not None:
        profile["nodata"] = nodata
    if count == 3:
        profile["photometric"] = "RGB"
    cols = _mirror(np.arange(side), w)
    tmp = out.with_name(f".{out.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        for y in range(0, side, strip):
            rows = _mirror(np.arange(y, min(side, y + strip)), h)
            dst.write(data[:, rows][:, :, cols], window=Window(0, y, side, len(rows)))
    os.replace(tmp, out)
    return out


def scene_for(args: argparse.Namespace, workdir: Path, source: Path, tag: str) -> tuple[Path, float]:
    """The scene to measure (given, reused from --workdir, or generated) and the seconds spent making it."""
    if args.image is not None:
        return args.image, 0.0
    path = workdir / f"mosaic-{tag}-{source.stem}-{mosaic_side(args.megapixels)}px-{args.gsd:g}m.tif"
    if path.is_file():
        return path, 0.0
    start = time.perf_counter()
    make_mosaic(source, path, args.megapixels, args.gsd)
    return path, time.perf_counter() - start


@dataclass
class Scene:
    path: Path
    before: Path | None
    width: int
    height: int
    gsd: float
    generated_s: float
    windows: int = 0
    extra: dict = field(default_factory=dict)


def describe_scene(path: Path, before: Path | None, gsd: float, generated_s: float, tile: int, overlap: int, passes: int) -> Scene:
    info = probe(path)
    pixel = info.ground_size or gsd
    stride = max(1, tile - overlap)
    windows = len(window_starts(info.height, min(tile, info.height), stride)) * len(window_starts(info.width, min(tile, info.width), stride))
    return Scene(path, before, info.width, info.height, pixel, generated_s, windows * passes)
