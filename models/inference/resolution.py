"""Ground resolution: how much to resample an input so the network sees it at its working resolution.

A network learns objects at the sizes its training imagery shows them: a house is 20 pixels across
at 0.5 m and 10 at 1 m. A checkpoint may record the ground sample distance it works at
(`metadata["gsd"]`, metres per pixel). When an input's pixel size is known (a CRS in metres, or
`--gsd` for a plain picture), every window is resampled by `zoom = input gsd / working gsd` before the
network and its probabilities back (`WindowRunner.predict_batch`): the outputs stay on the input's
grid. Without a known pixel size, or a checkpoint without a working resolution, nothing is resampled.
"""
from __future__ import annotations

import math

MIN_ZOOM, MAX_ZOOM = 0.25, 4.0
"""Resampling beyond these factors is refused: a 4x upsampled 2 m image is no longer aerial imagery
the network knows, and a 4x downsampled one throws away what the user paid for."""
SNAP = 0.1
"""Within 10 % of the working resolution the input is used as it is (no resampling cost)."""


def check_zoom(zoom: float) -> float:
    """A valid resampling factor, or a ValueError saying the allowed range."""
    zoom = float(zoom)
    if not MIN_ZOOM <= zoom <= MAX_ZOOM:
        raise ValueError(f"zoom must be between {MIN_ZOOM} and {MAX_ZOOM}, got {zoom:g}")
    return zoom


def working_gsd(metadata: dict) -> float | None:
    """The checkpoint's working ground resolution in metres per pixel, or None (use inputs as they are)."""
    value = metadata.get("gsd")
    return float(value) if value else None


def resample_range(metadata: dict) -> tuple[float, float] | None:
    """Input resolutions (m per pixel, inclusive) the checkpoint's working resolution is applied to, or None for all.

    A model trained at several resolutions may gain from resampling some inputs and lose on others
    (the bundled one: 0.5 m inputs gain at 0.3 m, 1 m and 5 m inputs lose when upsampled; MODEL_CARD.md):
    outside the range the input is used as it is."""
    value = metadata.get("gsd_range")
    return (float(value[0]), float(value[1])) if value else None


def zoom_for(input_gsd: float | None, working: float | None, within: tuple[float, float] | None = None) -> float:
    """The factor that brings `input_gsd` to `working` (1 when either is unknown, they are within SNAP, or
    `input_gsd` is outside `within`), clipped to [MIN_ZOOM, MAX_ZOOM]."""
    if not input_gsd or not working:
        return 1.0
    if within is not None and not within[0] <= input_gsd <= within[1]:
        return 1.0
    zoom = input_gsd / working
    if abs(zoom - 1.0) <= SNAP:
        return 1.0
    return round(min(max(zoom, MIN_ZOOM), MAX_ZOOM), 4)


def gsd_from_pixel_area(pixel_area_m2: float | None) -> float | None:
    """Metres per pixel from a pixel's ground area (square pixels assumed), or None."""
    return math.sqrt(pixel_area_m2) if pixel_area_m2 else None
