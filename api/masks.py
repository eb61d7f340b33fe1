"""Annotation masks: an index PNG (one class id per pixel) checked against the schema and the image size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from landsentry.models.vocabulary.classes import CLASS_NAMES, IGNORE_INDEX
from landsentry.models.vocabulary.errors import InputError, TooLargeError, UnsupportedMediaError
from landsentry.models.io.formats import sniff_format

VALID_IDS = set(range(len(CLASS_NAMES))) | {IGNORE_INDEX}


def read_mask(path: Path, width: int, height: int) -> np.ndarray:
    """H x W uint8 class ids. Grey or palette PNGs hold ids directly; RGB(A) exports from a canvas are
    accepted when R = G = B (alpha 0 = ignore). Wrong size or unknown ids -> 422 with the reason."""
    if sniff_format(path) != "PNG":
        raise UnsupportedMediaError("the mask must be a PNG (one class id per pixel)")
    try:
        with Image.open(path) as img:
            if img.size != (width, height):
                raise InputError(f"the mask is {img.size[0]}x{img.size[1]} px but the image is {width}x{height} px")
            img.load()
            mode = img.mode
            array = np.asarray(img)
    except Image.DecompressionBombError:
        raise TooLargeError("the mask claims more pixels than any image accepted here") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"the mask PNG is damaged or truncated: {str(exc)[:200]}") from None
    if mode in ("L", "P"):
        ids = array.astype(np.uint8)
    elif mode in ("LA", "RGB", "RGBA"):
        colour = array[..., :-1] if mode in ("LA", "RGBA") else array
        if colour.shape[-1] == 3 and not ((colour[..., 0] == colour[..., 1]).all() and (colour[..., 1] == colour[..., 2]).all()):
            raise InputError("the mask is a colour image; send class ids as grey values (R = G = B = id) or an 8-bit index PNG")
        ids = colour[..., 0].astype(np.uint8)
        if mode in ("LA", "RGBA"):
            ids = np.where(array[..., -1] == 0, IGNORE_INDEX, ids).astype(np.uint8)
    else:
        raise InputError(f"the mask PNG has mode {mode}; send an 8-bit index (grey or palette) PNG of class ids")
    unknown = sorted(set(np.unique(ids).tolist()) - VALID_IDS)
    if unknown:
        raise InputError(f"the mask holds unknown class ids {unknown[:10]}; valid ids are 0-{len(CLASS_NAMES) - 1} and {IGNORE_INDEX} (ignore)")
    return ids


def class_pixels(ids: np.ndarray) -> dict[str, int]:
    counts = np.bincount(ids.ravel(), minlength=256)
    return {**{name: int(counts[i]) for i, name in enumerate(CLASS_NAMES)}, "ignore": int(counts[IGNORE_INDEX])}
