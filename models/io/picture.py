"""PNG and JPEG decoded whole, as a viewer shows them: orientation applied, full bit depth, one image per file.

- EXIF orientation (cameras, phones, some exports) is applied, so the pixels interpreted are the
  picture a viewer shows; the results are on that oriented grid.
- 16-bit PNGs are decoded at 16 bits. Pillow reduces 16-bit colour PNGs to 8 bits by keeping the
  high byte, which turns 12-bit data (0..4095) into nearly black 0..15; GDAL's PNG driver reads
  every band at full depth, and the stretch (`models.io.stretch`) then scales 12 or 16 bits alike.
- A file with several images (an animated PNG) is refused: which frame to interpret is the user's choice.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from landsentry.models.io.formats import READ_ERRORS, check_pixels, short_error
from landsentry.models.vocabulary.errors import InputError, TooLargeError

ORIENTATION_TAG = 0x0112
TRANSPOSED = (5, 6, 7, 8)
"""EXIF orientations that swap width and height."""


def bomb_error(name: str, exc: Image.DecompressionBombError, limit: int) -> TooLargeError:
    """Pillow's decompression-bomb refusal in landsentry's words: the pixels the file claims and the one
    limit that applies (LANDSENTRY_MAX_DECODED_PIXELS), not Pillow's own limit as well."""
    claimed = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(claimed.group(1)):,} pixels" if claimed else "more pixels than Pillow decodes"
    return TooLargeError(f"{name} claims {size}, over the limit of {limit:,} "
                         "(set LANDSENTRY_MAX_DECODED_PIXELS to raise it, or tile the image)")


def png_depth(path: Path) -> int | None:
    """Bit depth from a PNG's IHDR chunk (None for other files)."""
    with path.open("rb") as fh:
        head = fh.read(26)
    return head[24] if len(head) == 26 and head[12:16] == b"IHDR" else None


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 = as stored) of an opened picture."""
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block: the picture as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) as a viewer shows the picture."""
    return (img.height, img.width) if orientation(img) in TRANSPOSED else img.size


def picture_to_array(img: Image.Image) -> tuple[np.ndarray, bool]:
    """PIL image -> (C x H x W array in uint8, or uint16 for 16-bit grey; whether the last band is alpha)."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "HSV", "LAB", "1", "PA"):
        img = img.convert("RGB")
    elif mode.startswith("I;16") or mode == "I":
        return np.asarray(img).astype(np.uint16)[None], False
    elif mode == "F":
        return np.asarray(img, dtype=np.float32)[None], False
    array = np.asarray(img)
    has_alpha = img.mode in ("LA", "RGBA")
    return (array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))), has_alpha


def _sixteen_bit_png(path: Path, name: str) -> tuple[np.ndarray, bool]:
    """A 16-bit PNG through GDAL: every band at full depth; the last band is alpha for grey+alpha and RGBA."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path, driver="PNG") as ds:
                array = ds.read()
    except READ_ERRORS as exc:
        raise InputError(f"{name} is a damaged or truncated PNG image: {short_error(exc)}") from None
    return array, array.shape[0] in (2, 4)


def decode_picture(path: Path, fmt: str, name: str, limit: int) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(C x H x W data bands, H x W alpha validity or None, what was done) of a PNG or JPEG.

    `limit`: the most pixels decoded (LANDSENTRY_MAX_DECODED_PIXELS), checked from the header first.
    """
    try:
        with warnings.catch_warnings():
            # our own limit applies, checked before decoding; Pillow's global setting is left alone
            # (its bomb error, for sizes far past ours, is mapped to TooLargeError below)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                check_pixels(path, img.width, img.height, limit, "LANDSENTRY_MAX_DECODED_PIXELS", name)
                frames = getattr(img, "n_frames", 1)
                if frames > 1 and fmt == "PNG":
                    raise InputError(f"{name} is an animated PNG with {frames} frames; landsentry reads one image per file: "
                                     "save the frame to interpret as a PNG of its own")
                turn = orientation(img)
                if fmt == "PNG" and png_depth(path) == 16 and img.mode not in ("I;16", "I;16B", "I"):
                    array, has_alpha = _sixteen_bit_png(path, name)
                else:
                    img.load()
                    array, has_alpha = picture_to_array(img)
    except Image.DecompressionBombError as exc:
        raise bomb_error(name, exc, limit) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name} is a damaged or truncated {fmt} image: {short_error(exc)}") from None
    if turn != 1:
        array = _orient(array, turn)
    alpha = None
    if has_alpha:
        alpha, array = array[-1] > 0, array[:-1]
    return array, alpha, {"exif_orientation": turn, "bits": int(array.dtype.itemsize * 8)}


def _orient(array: np.ndarray, turn: int) -> np.ndarray:
    """C x H x W as EXIF orientation `turn` (2..8) says a viewer shows it (what ImageOps.exif_transpose does)."""
    ops = {
        2: lambda a: a[:, :, ::-1],
        3: lambda a: a[:, ::-1, ::-1],
        4: lambda a: a[:, ::-1, :],
        5: lambda a: a.transpose(0, 2, 1),
        6: lambda a: np.rot90(a, -1, axes=(1, 2)),
        7: lambda a: a[:, ::-1, ::-1].transpose(0, 2, 1),
        8: lambda a: np.rot90(a, 1, axes=(1, 2)),
    }
    return np.ascontiguousarray(ops[turn](array))
