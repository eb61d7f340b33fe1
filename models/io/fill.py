"""Nodata never reaches the network as pixel values: invalid pixels take their nearest valid neighbour's bands.

Nodata values, masks, alpha and NaN mark pixels without an image. Their classes are thrown away
(255 in the results), but a window that holds them still feeds them to the network as context for
the valid pixels beside them: a black or NaN collar would then change the classes inside the
image (NaN even spreads to the whole window). Filling each invalid pixel with the nearest valid
pixel's values (GDAL's FillNodata idea, without the smoothing) continues the image outwards, so
the valid pixels see plausible surroundings.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

CHUNK_COLUMNS = 4096
"""Strips are filled in column chunks: the nearest-pixel indices of a whole wide strip would take
hundreds of MB; nearest within 4096 columns is as good for context that reaches 512 px."""


def fill_invalid(bands: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """`bands` (C x H x W float, 0..255) with every invalid pixel set to its nearest valid pixel's values.

    A chunk without any valid pixel takes the per-band mean of the valid pixels of the whole read
    (0 when there are none: those pixels are all nodata, and so are their results). Returns `bands`
    itself when every pixel is valid, otherwise a filled copy.
    """
    if valid.all():
        return bands
    out = np.array(bands, dtype=np.float32, copy=True)
    if not valid.any():
        out[:] = 0.0
        return out
    mean = out[:, valid].mean(axis=1)
    width = valid.shape[1]
    for x0 in range(0, width, CHUNK_COLUMNS):
        ok = valid[:, x0 : x0 + CHUNK_COLUMNS]
        if ok.all():
            continue
        part = out[:, :, x0 : x0 + CHUNK_COLUMNS]
        if not ok.any():
            part[:] = mean[:, None, None]
            continue
        rows, cols = ndimage.distance_transform_edt(~ok, return_distances=False, return_indices=True)
        part[:] = part[:, rows, cols]
    return out
