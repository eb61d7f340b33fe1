"""From raw band values to the 0..255 scale the model reads: kept as its own step, so every reader
(the raster source, the warped before image of a pair, previews) scales the same way.

The model was trained on 8-bit imagery, so 8-bit values are used as they are, also when a file
stores them in another type: floats that are all whole numbers in 0..255, or all multiples of
1/255 in 0..1 (what image libraries write when they convert 8-bit pictures to floats). Any other
data - uint16 satellite data, 12-bit data in 16 bits, reflectance in 0..1 or scaled to 0..10000,
any float range - is stretched linearly between per-band percentiles of the valid, non-zero pixels
of a decimated read of the whole image. NaN and ±inf are never values: they are nodata.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRETCH_PERCENTILES = (2.0, 98.0)
WHOLE_TOLERANCE = 1e-3
"""How far (in 8-bit steps) a float may be from a whole 8-bit value and still count as one."""

Stretch = tuple[np.ndarray, np.ndarray]
"""Per-band (low, high) as C x 1 x 1 float32 arrays."""


@dataclass(frozen=True)
class Scaling:
    """How a source's raw values become 0..255: the stretch (None: as they are) and the rule, in words."""

    stretch: Stretch | None
    rule: str

    def describe(self) -> dict:
        """For summary.json: the rule and, for a stretch, the per-band raw values mapped to 0 and 255."""
        out: dict = {"rule": self.rule}
        if self.stretch is not None:
            lo, hi = self.stretch
            out.update(low=[round(float(v), 6) for v in lo.ravel()], high=[round(float(v), 6) for v in hi.ravel()])
        return out


AS_IS = Scaling(None, "8-bit values, used as they are")


def finite_mask(data: np.ndarray) -> np.ndarray | None:
    """H x W: pixels whose bands are all finite (floats); None for integer data, which is always finite."""
    if data.dtype.kind != "f":
        return None
    return np.isfinite(data).all(axis=0)


def percentile_stretch(raw: np.ndarray, valid: np.ndarray) -> Stretch:
    """Per-band (low, high) from the STRETCH_PERCENTILES of valid, non-zero, finite values (C x H x W `raw`)."""
    lows, highs = [], []
    for band in raw:
        values = band[valid & (band != 0)] if valid.any() else band.ravel()
        values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if values.size == 0:
            values = np.zeros(1)
        lo, hi = np.percentile(values, STRETCH_PERCENTILES)
        lows.append(lo)
        highs.append(hi if hi > lo else lo + 1)
    return np.array(lows, np.float32)[:, None, None], np.array(highs, np.float32)[:, None, None]


def _whole(values: np.ndarray) -> bool:
    return bool(np.all(np.abs(values - np.rint(values)) <= WHOLE_TOLERANCE))


def choose_scaling(raw: np.ndarray, valid: np.ndarray) -> Scaling:
    """The scaling of a source from a decimated read of it (C x H x W `raw`, H x W `valid`)."""
    if raw.dtype == np.uint8:
        return AS_IS
    if raw.dtype.kind == "f":
        values = raw[:, valid].astype(np.float64)
        values = values[np.isfinite(values)]
        if values.size and values.min() >= 0 and values.max() <= 255 and _whole(values):
            return Scaling(None, "8-bit values stored as floats, used as they are")
        if values.size and values.min() >= 0 and values.max() <= 1 and _whole(values * 255):
            ones = np.ones((raw.shape[0], 1, 1), np.float32)
            return Scaling((ones * 0, ones), "8-bit values stored as fractions of 1, multiplied by 255")
    kind = "float" if raw.dtype.kind == "f" else f"{raw.dtype.itemsize * 8}-bit"
    low, high = STRETCH_PERCENTILES
    return Scaling(percentile_stretch(raw, valid), f"{kind} data stretched linearly between the {low:g} % and {high:g} % percentiles of each band")


def scale_to_255(raw: np.ndarray, stretch: Stretch | None) -> np.ndarray:
    """float32 bands in 0..255: as they are, or linearly stretched from (lo, hi) (uint16 and other ranges).
    Non-finite values stay non-finite: they are nodata, filled before the network (`models.io.fill`)."""
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
    """C x H x W bands in 0..255 -> H x W x 3 uint8 (one band is repeated to grey; nodata NaN shows black)."""
    rgb = data[:3] if data.shape[0] >= 3 else np.repeat(data[:1], 3, axis=0)
    rgb = np.nan_to_num(rgb, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(rgb, 0, 255).transpose(1, 2, 0).astype(np.uint8)
