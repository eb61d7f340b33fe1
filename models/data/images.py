"""Whole labelled images as a model sees them: pixels through the inference raster source, band checks.

Images are decoded by `landsentry.models.io.raster.RasterSource` (magic-byte sniffing, pixel limits,
band handling, uint16 stretch): the same path as inference, so training, evaluation and serving
see the same pixels. Headers come from `landsentry.models.io.header.probe`, the one header probe.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.windows import Window

from landsentry.models.io.raster import RasterSource


def band_problem(path: Path, bands: int, channels: int) -> str | None:
    """Why an image with `bands` data bands cannot feed a `channels`-band model, or None (mirrors RasterSource)."""
    ok = bands == 4 if channels == 4 else bands in (1, 3, 4)
    if ok:
        return None
    return f"{path}: has {bands} data band(s); a {channels}-band model trains on " + (
        "4-band (RGB+NIR) images" if channels == 4 else "1 (panchromatic), 3 (RGB) or 4 (RGB+NIR) band images"
    )


def read_image(path: Path, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 C x H x W with `channels` bands, bool H x W valid pixels) via RasterSource.

    Exactly the bands inference reads: 1 band is repeated for 3-channel models, 4 bands give RGB
    (+NIR for 4-channel models), uint16 is stretched; a 1-channel model gets band 1 of RGB input
    (RasterSource's choice - kept identical so training and serving never disagree).
    """
    with RasterSource(path, channels=channels) as src:
        data, valid = src.read(Window(0, 0, src.info.width, src.info.height))
    data = np.nan_to_num(data, nan=0.0, posinf=255.0, neginf=0.0)  # NaN/inf are nodata: `valid` says so
    return np.clip(np.rint(data), 0, 255).astype(np.uint8), np.asarray(valid, bool)
