"""What a file is, before anything is decoded: format by magic bytes, pixel limits, short GDAL messages.

Formats are recognised by their first bytes, never by the file name. Pixel limits are checked from
the header before decoding (decompression-bomb guard): GeoTIFFs are streamed window by window, so
their limit bounds run time; PNG and JPEG are decoded whole, so theirs bounds memory.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from rasterio._err import CPLE_BaseError
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from landsentry.models.vocabulary.errors import InputError, TooLargeError, UnsupportedMediaError

MAX_PIXELS = int(os.environ.get("LANDSENTRY_MAX_PIXELS", 2_000_000_000))
"""Largest GeoTIFF (width x height) accepted; streamed, so this bounds run time, not memory."""
MAX_DECODED_PIXELS = int(os.environ.get("LANDSENTRY_MAX_DECODED_PIXELS", 150_000_000))
"""Largest PNG/JPEG accepted; these are decoded whole, so this bounds memory (~600 MB at RGB)."""
READ_ERRORS = (RasterioError, CPLE_BaseError)
"""GDAL's CPLE_* errors do not subclass RasterioError."""


def quiet_georeferencing_warnings() -> None:
    """Silence rasterio's NotGeoreferencedWarning, process-wide: "Dataset has no geotransform, gcps, or rpcs"
    when a plain picture is opened, "The given matrix is equal to Affine.identity" when results of one
    are written.

    landsentry opens and writes plain pictures on purpose and reports every input's georeferencing
    itself (`models.io.georef`); rasterio also warns for the in-memory datasets it makes inside
    `features.shapes`, from whichever thread polygonises. A `catch_warnings` block cannot silence
    that (it is not thread-safe, and restores the filters under other threads), and a filter set
    once at import is lost under anything that resets the filters (pytest does, per test), so the
    entry points that open or make datasets call this: one narrow filter, inserted again each time.
    """
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)

_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "GTiff",
    b"MM\x00*": "GTiff",
    b"II+\x00": "GTiff",  # BigTIFF
    b"MM\x00+": "GTiff",
}


def sniff_format(path: Path, name: str | None = None) -> str:
    """'PNG', 'JPEG' or 'GTiff' from the first bytes; refuses empty, missing and other files (`name`: how
    messages call the file, default its name)."""
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    name = name or path.name
    with path.open("rb") as fh:
        head = fh.read(8)
    if not head:
        raise InputError(f"{name} is empty (0 bytes)")
    for magic, fmt in _MAGIC.items():
        if head.startswith(magic):
            return fmt
    raise UnsupportedMediaError(f"{name} is not a PNG, JPEG or GeoTIFF image (unrecognised file header)")


def check_pixels(path: Path, width: int, height: int, limit: int, setting: str = "LANDSENTRY_MAX_PIXELS",
                 name: str | None = None) -> None:
    """InputError for an image without pixels, TooLargeError for one over `limit` pixels; the message names
    the one setting (`setting`, an environment variable) that raises that limit."""
    name = name or path.name
    if width <= 0 or height <= 0:
        raise InputError(f"{name} has no pixels ({width}x{height})")
    if width * height > limit:
        raise TooLargeError(
            f"{name} claims {width}x{height} = {width * height:,} pixels, over the limit of {limit:,} "
            f"(set {setting} to raise it, or tile the image)"
        )


def short_error(exc: BaseException) -> str:
    """The first line of an error (for rasterio: of the GDAL error behind it), for one-line messages."""
    if exc.__cause__ is not None and "previous exception" in str(exc):
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:240]
