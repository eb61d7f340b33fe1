"""One probe of an image's header: size, data bands, type and georeferencing, without decoding pixels.

The service checks uploads with it, the data layer checks training records with it and the bench
describes its scene with it; none of them opens files its own way.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from landsentry.models.io.formats import MAX_DECODED_PIXELS, MAX_PIXELS, READ_ERRORS, check_pixels, short_error, sniff_format
from landsentry.models.io.georef import georeference
from landsentry.models.io.picture import bomb_error, oriented_size, png_depth
from landsentry.models.vocabulary.errors import InputError

_PALETTE_MODES = ("P", "PA", "CMYK", "YCbCr", "HSV", "LAB")


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says."""

    path: Path
    format: str  # PNG, JPEG or GTiff
    width: int
    height: int
    bands: int  # data bands (an alpha band does not count)
    dtype: str
    crs: CRS | None = None
    transform: Affine = Affine.identity()

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def ground_size(self) -> float | None:
        """Side of a pixel in CRS units (metres for projected CRSs); None without a CRS."""
        if self.crs is None:
            return None
        t = self.transform
        return math.sqrt(abs(t.a * t.e - t.b * t.d))

    def check_limit(self, limit: int | None = None, setting: str | None = None, name: str | None = None) -> "ImageHeader":
        """TooLargeError over `limit` pixels (set by the variable `setting`), or over the reading limit of the
        format (streamed GeoTIFF, decoded PNG/JPEG) when that is lower; the message names the one that applies."""
        default, variable = (MAX_PIXELS, "LANDSENTRY_MAX_PIXELS") if self.format == "GTiff" else (MAX_DECODED_PIXELS, "LANDSENTRY_MAX_DECODED_PIXELS")
        if limit is not None and limit < default:
            default, variable = limit, setting or variable
        check_pixels(self.path, self.width, self.height, default, variable, name)
        return self


def probe(path: str | Path, name: str | None = None) -> ImageHeader:
    """The header of a PNG, JPEG or GeoTIFF; InputError (415 for other formats) when it cannot be read
    (`name`: how messages call the file, default its name)."""
    path = Path(path)
    name = name or path.name
    fmt = sniff_format(path, name)
    try:
        if fmt == "GTiff":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as ds:
                    alpha = sum(c == ColorInterp.alpha for c in ds.colorinterp)
                    geo = georeference(ds, name)
                    return ImageHeader(path, fmt, ds.width, ds.height, ds.count - alpha, ds.dtypes[0], geo.crs, geo.transform)
        with Image.open(path) as img:
            bands = 3 if img.mode in _PALETTE_MODES else len([b for b in img.getbands() if b != "A"])
            dtype = "uint16" if img.mode.startswith("I;16") or img.mode == "I" else ("float32" if img.mode == "F" else "uint8")
            if fmt == "PNG" and png_depth(path) == 16:
                dtype = "uint16"  # Pillow calls 16-bit colour 8-bit RGB; models.io.picture reads all 16
            return ImageHeader(path, fmt, *oriented_size(img), bands, dtype)
    except Image.DecompressionBombError as exc:
        raise bomb_error(name, exc, MAX_DECODED_PIXELS) from None
    except (*READ_ERRORS, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name} has an unreadable {fmt} header: {short_error(exc)}") from None
