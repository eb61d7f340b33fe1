"""Annotation masks as the service accepts them: the data layer's mask reader plus the upload's own rules.

`landsentry.models.data.masks` decodes the file (the same reader training uses, so a stored sample
means what it meant on the page); this adds what is specific to an upload: PNG only, the image's
size, canvas exports (RGB(A) with R = G = B, alpha 0 = ignore) and schema ids only, each refused
with a message the page can show.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from landsentry.models.data.masks import decode_mask, map_mask
from landsentry.models.data.statistics import label_counts
from landsentry.models.io.formats import sniff_format
from landsentry.models.io.header import probe
from landsentry.models.vocabulary.classes import CLASS_NAMES, IGNORE_INDEX
from landsentry.models.vocabulary.errors import InputError, UnsupportedMediaError


def read_mask(path: Path, width: int, height: int) -> np.ndarray:
    """H x W uint8 class ids. Grey or palette PNGs hold ids directly; RGB(A) exports from a canvas are
    accepted when R = G = B (alpha 0 = ignore). Wrong size or unknown ids -> 422 with the reason."""
    if sniff_format(path) != "PNG":
        raise UnsupportedMediaError("the mask must be a PNG (one class id per pixel)")
    header = probe(path)
    if (header.width, header.height) != (width, height):
        raise InputError(f"the mask is {header.width}x{header.height} px but the image is {width}x{height} px")
    mask = decode_mask(path)
    if mask.codes.ndim == 3:
        raise InputError("the mask is a colour image; send class ids as grey values (R = G = B = id) or an 8-bit index PNG")
    ids = mask.codes if mask.alpha is None else np.where(mask.alpha == 0, IGNORE_INDEX, mask.codes).astype(np.uint8)
    _, unknown = map_mask(ids, None)
    if unknown:
        raise InputError(f"the mask holds unknown class ids {unknown[:10]}; valid ids are 0-{len(CLASS_NAMES) - 1} and {IGNORE_INDEX} (ignore)")
    return ids


def class_pixels(ids: np.ndarray) -> dict[str, int]:
    """Pixels per class name (and 'ignore') of a mask of class ids, as the sample list shows them."""
    return dict(zip((*CLASS_NAMES, "ignore"), map(int, label_counts(ids))))
