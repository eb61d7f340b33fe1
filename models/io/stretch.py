"""From raw band values to the 0..255 scale the model reads: kept as its own step, so every reader
(the raster source, the warped before image of a pair, previews) scales the same way.

8-bit data is used as it is. Other types (uint16 satellite data, floats) are stretched linearly
between per-band percentiles of the valid, non-zero pixels of a decimated read of the whole image.
"""
from __future__ import annotations

import numpy as np

STRETCH_PERCENTILES = (2.0, 98.0)

Stretch = tuple[np.ndarray, np.ndarray]
"""Per-band (low, high) as C x 1 x 1 float32 arrays."""


def percentile_stretch(raw: np.ndarray, valid: np.ndarray) -> Stretch:
    """Per-band (low, high) from the STRETCH_PERCENTILES of valid, non-zero values (C x H x W `raw`)."""
    lows, highs = [], []
    for band in raw:
        values = band[valid & (band != 0)] if valid.any() else band.ravel()
        if values.size == 0:
            values = np.zeros(1)
        lo, hi = np.percentile(values, STRETCH_PERCENTILES)
        lows.append(lo)
        highs.append(hi if hi > lo else lo + 1)
    return np.array(lows, np.float32)[:, None, None], np.array(highs, np.float32)[:, None, None]


def scale_to_255(raw: np.ndarray, stretch: Stretch | None) -> np.ndarray:
    """float32 bands in 0..255: as they are, or linearly stretched from (lo, hi) (uint16 and other ranges)."""
    data = raw.astype(np.float32, copy=False)
    if stretch is not None:
        lo, hi = stretch
        if data is raw:  # never scale the caller's array in place
            data = data.copy()
        data -= lo  # in place: a full-width row band of a large scene is hundreds of MB
        data *= 255.0 / (hi - lo)
        np.clip(data, 0, 255, out=data)
    return data


def rgb_preview(data: np.ndarray) -> np.ndarray:
    """C x H x W bands in 0..255 -> H x W x 3 uint8 (one band is repeated to grey)."""
    rgb = data[:3] if data.shape[0] >= 3 else np.repeat(data[:1], 3, axis=0)
    return rgb.transpose(1, 2, 0).astype(np.uint8)
