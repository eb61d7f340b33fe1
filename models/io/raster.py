"""Raster input: PNG/JPEG/GeoTIFF opened safely and read window by window as model-ready bands.

GeoTIFFs are read window by window; PNG and JPEG cannot be read partially, so they are decoded once
under a tighter limit (`models.io.formats`). Reading has two public steps: `read_raw` (the chosen
bands as stored, with the validity mask) and `to_255` (the stretch, `models.io.stretch`); `read`
does both. Every failure a user can cause becomes an `InputError` with a message, not a traceback.
"""
from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from landsentry.models.io.formats import (
    MAX_DECODED_PIXELS, MAX_PIXELS, READ_ERRORS, check_pixels, quiet_georeferencing_warnings, short_error, sniff_format,
)
from landsentry.models.io.georef import Georef, georeference
from landsentry.models.io.picture import decode_picture
from landsentry.models.io.stretch import AS_IS, Scaling, choose_scaling, finite_mask, rgb_preview, scale_to_255
from landsentry.models.vocabulary.errors import InputError

os.environ.setdefault("GDAL_CACHEMAX", "128")
"""GDAL's block cache in MB (its default is 5 % of RAM): blocks of a large scene are read and
written in order, a row of windows at a time, so a bigger cache mostly adds resident memory (1.2 GB
of it on a 400 Mpx scene). Set GDAL_CACHEMAX yourself to override; it is read when GDAL first caches a block."""

__all__ = ["ArraySource", "RasterInfo", "RasterSource", "MAX_PIXELS", "MAX_DECODED_PIXELS", "sniff_format"]


@dataclass(frozen=True)
class RasterInfo:
    """What the rest of the pipeline needs to know about an input, before reading pixels."""

    width: int
    height: int
    count: int
    dtype: str
    crs: CRS | None
    transform: Affine
    driver: str

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None

    @property
    def pixel_area(self) -> float:
        """Area of one pixel in CRS units squared (m² for metric CRSs, or from --gsd)."""
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d)


class RasterSource:
    """An input image opened for windowed reading of `channels` model bands scaled to 0..255.

    1-band input is repeated to fill 3 channels (panchromatic); 4-band input is read as R, G, B
    (+ NIR when the model takes 4 bands); an alpha band, a nodata value or NaN becomes the validity
    mask. `bands` (1-based) picks bands explicitly for other layouts. `name` is how messages call
    the file (default: its name; the service passes the uploaded file's name), `bands_option` how
    they tell the user to pick bands (the CLI's --bands; the service's form field).
    """

    def __init__(self, path: str | Path, channels: int = 3, bands: list[int] | None = None, gsd: float | None = None,
                 name: str | None = None, bands_option: str = "--bands") -> None:
        quiet_georeferencing_warnings()
        self.path = Path(path)
        self.name = name or self.path.name
        self.bands_option = bands_option
        self.georef = Georef(None, Affine.identity(), "none")
        self.picture: dict = {}
        self.format = sniff_format(self.path, self.name)
        self.lock = threading.Lock()  # one GDAL handle: reads from prefetch threads take turns
        self.dataset = None
        self._array: np.ndarray | None = None  # decoded PNG/JPEG, C x H x W
        self._alpha: np.ndarray | None = None
        try:
            if self.format == "GTiff":
                self._open_geotiff(gsd)
            else:
                self._open_picture(gsd)
            self.channels = channels
            self.band_indexes = self._choose_bands(bands, channels)
            self.scaling = self._compute_scaling()
            self.stretch = self.scaling.stretch
        except BaseException:  # refused after opening (size, bands, unreadable): do not leak the file
            self.close()
            raise

    # --- opening -------------------------------------------------------------------------------
    def _open_geotiff(self, gsd: float | None) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = rasterio.open(self.path)
        except READ_ERRORS as exc:
            raise InputError(f"{self.name} is not a readable GeoTIFF: {short_error(exc)}") from None
        self.dataset = ds
        check_pixels(self.path, ds.width, ds.height, MAX_PIXELS, "LANDSENTRY_MAX_PIXELS", self.name)
        if ds.subdatasets:
            raise InputError(
                f"{self.name} holds {len(ds.subdatasets)} images (TIFF pages); landsentry reads one image per file: save the "
                f"page to interpret as a file of its own (e.g. gdal_translate GTIFF_DIR:2:{self.name} page2.tif)")
        self.georef = georeference(ds, self.name)
        if self.georef.problem:
            raise InputError(self.georef.problem)
        transform, crs = self.georef.transform, self.georef.crs
        if crs is None and transform == Affine.identity() and gsd:
            transform = Affine(gsd, 0, 0, 0, -gsd, 0)
        elif crs is None and gsd:
            transform = Affine(gsd, 0, transform.c, 0, -gsd, transform.f)
        self._color = list(ds.colorinterp)
        self.info = RasterInfo(ds.width, ds.height, ds.count, ds.dtypes[0], crs, transform, "GTiff")

    def _open_picture(self, gsd: float | None) -> None:
        array, alpha, self.picture = decode_picture(self.path, self.format, self.name, MAX_DECODED_PIXELS)
        self._array, self._alpha, self._color = array, alpha, []
        transform = Affine(gsd, 0, 0, 0, -gsd, 0) if gsd else Affine.identity()
        self.info = RasterInfo(array.shape[2], array.shape[1], array.shape[0], str(array.dtype), None, transform, self.format)

    def _choose_bands(self, bands: list[int] | None, channels: int) -> list[int]:
        count = self.info.count
        tagged = [i + 1 for i, c in enumerate(self._color) if c == ColorInterp.alpha]
        # GDAL tags the 4th band of any 4-band 8-bit GeoTIFF as alpha unless it was written with
        # PHOTOMETRIC=MINISBLACK, so RGB+NIR files often call their NIR "alpha": only a band that
        # holds a mask (0 / full scale) is one; otherwise it is data and GDAL's masks (derived from it) are not used
        alpha = [b for b in tagged if self._holds_mask(b)]
        self._gdal_masks = alpha == tagged
        data_bands = [b for b in range(1, count + 1) if b not in alpha]
        if bands:
            bad = [b for b in bands if not 1 <= b <= count]
            if bad:
                raise InputError(f"{self.name} has {count} band(s): {','.join(map(str, bad))} in {self.bands_option} is out of range")
            chosen = list(bands)
        elif len(data_bands) == 1:
            chosen = data_bands * 3 if channels == 3 else data_bands
        elif len(data_bands) in (3, 4):
            chosen = data_bands[:channels] if len(data_bands) >= channels else []
        else:
            chosen = []
        if len(chosen) == 1 and channels == 3:
            chosen = chosen * 3
        if len(chosen) != channels:
            raise InputError(
                f"{self.name} has {len(data_bands)} data band(s); landsentry reads 1 (panchromatic), "
                f"3 (RGB) or 4 (RGB+NIR) bands for this {channels}-band model; pick {channels} of them with {self.bands_option} (e.g. 3,2,1)"
            )
        self.alpha_band = alpha[0] if alpha else None
        return chosen

    def _holds_mask(self, band: int) -> bool:
        """Whether a band tagged alpha really is one: (nearly) only 0 and full-scale values, on a decimated read."""
        scale = max(1.0, max(self.info.width, self.info.height) / 256)
        shape = (max(1, int(self.info.height / scale)), max(1, int(self.info.width / scale)))
        try:
            values = self.dataset.read(band, out_shape=shape)
        except READ_ERRORS as exc:
            raise InputError(f"{self.name} could not be read: {short_error(exc)} (truncated or corrupt file?)") from None
        full = np.iinfo(values.dtype).max if values.dtype.kind in "ui" else 1
        return bool(np.isin(values, (0, 255, full)).mean() >= 0.99)

    # --- scaling -------------------------------------------------------------------------------
    def _compute_scaling(self) -> Scaling:
        """How raw values become 0..255 (`models.io.stretch`), judged on a decimated read of the whole image."""
        if self.info.dtype == "uint8":
            return AS_IS
        scale = max(1.0, max(self.info.width, self.info.height) / 1024)
        shape = (max(1, int(self.info.height / scale)), max(1, int(self.info.width / scale)))
        raw, valid = self.read_raw(Window(0, 0, self.info.width, self.info.height), out_shape=shape)
        return choose_scaling(raw, valid)

    def describe(self) -> dict:
        """For summary.json: the file as it was read (type, scaling, georeferencing, orientation)."""
        out = {"file": self.name, "format": self.format, "dtype": self.info.dtype, "bands": list(self.band_indexes),
               "scaling": self.scaling.describe(), "georeferencing": self.georef.describe()}
        if self.picture.get("exif_orientation", 1) != 1:
            out["exif_orientation"] = self.picture["exif_orientation"]
        return out

    # --- reading -------------------------------------------------------------------------------
    def read_raw(self, window: Window, out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The chosen bands as stored (C x H x W, the file's dtype) and the bool valid mask, decimated to
        `out_shape` when given. Takes the source's lock: GDAL handles are not shared between threads."""
        with self.lock:
            return self._read_raw(window, out_shape)

    def _read_raw(self, window: Window, out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.dataset is not None:
            try:
                kwargs = {"window": window}
                if out_shape:
                    kwargs["out_shape"] = (len(self.band_indexes),) + out_shape
                data = self.dataset.read(self.band_indexes, **kwargs)
                if out_shape:
                    kwargs["out_shape"] = out_shape
                if not self._gdal_masks:  # validity from nodata alone (see _choose_bands)
                    nodata = self.dataset.nodata
                    mask = np.ones(data.shape[1:], bool) if nodata is None or np.isnan(nodata) else ~(data == nodata).any(axis=0)
                else:
                    mask = self.dataset.read_masks(self.band_indexes[0], **kwargs) > 0
                    if self.alpha_band is None and len(set(self.band_indexes)) > 1:
                        for b in sorted(set(self.band_indexes))[1:]:
                            mask &= self.dataset.read_masks(b, **kwargs) > 0
            except READ_ERRORS as exc:
                raise InputError(f"{self.name} could not be read at rows {window.row_off}-{window.row_off + window.height}: {short_error(exc)} (truncated or corrupt file?)") from None
        else:
            rows = slice(int(window.row_off), int(window.row_off + window.height))
            cols = slice(int(window.col_off), int(window.col_off + window.width))
            data = self._array[[b - 1 for b in self.band_indexes], rows, cols]
            mask = self._alpha[rows, cols] if self._alpha is not None else np.ones(data.shape[1:], bool)
            if out_shape:
                ys = np.linspace(0, data.shape[1] - 1, out_shape[0]).astype(int)
                xs = np.linspace(0, data.shape[2] - 1, out_shape[1]).astype(int)
                data, mask = data[:, ys][:, :, xs], mask[ys][:, xs]
        finite = finite_mask(data)  # NaN and ±inf are nodata, declared or not
        return data, mask if finite is None else mask & finite

    def to_255(self, raw: np.ndarray) -> np.ndarray:
        """Raw bands of this source on the model's 0..255 scale (its own stretch, `models.io.stretch`)."""
        return scale_to_255(raw, self.stretch)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Bands as float32 C x H x W in 0..255, and a bool H x W mask of valid (not nodata) pixels."""
        raw, valid = self.read_raw(window)
        return self.to_255(raw), valid

    def preview(self, shape: tuple[int, int], window: Window | None = None) -> np.ndarray:
        """A decimated H x W x 3 uint8 view of the image (or of a window of it), read without full decoding."""
        window = window or Window(0, 0, self.info.width, self.info.height)
        raw, _ = self.read_raw(window, out_shape=shape)
        return rgb_preview(self.to_255(raw))

    @property
    def data_band_count(self) -> int:
        """Bands that hold image data (an alpha band that really is a mask does not count)."""
        return self.info.count - (1 if self.alpha_band is not None and self.format == "GTiff" else 0)

    def close(self) -> None:
        if self.dataset is not None:
            self.dataset.close()
            self.dataset = None

    def __enter__(self) -> "RasterSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArraySource:
    """An in-memory C x H x W image (0..255) with the reading interface of RasterSource.

    Lets arrays (API uploads already decoded, tests, change detection on aligned grids) go through
    exactly the same tiling code as files.
    """

    def __init__(self, image: np.ndarray, valid: np.ndarray | None = None, transform: Affine | None = None, crs: CRS | None = None) -> None:
        if image.ndim != 3:
            raise InputError(f"expected a C x H x W image, got shape {image.shape}")
        self.image = image
        self.valid = valid if valid is not None else np.ones(image.shape[1:], bool)
        self.info = RasterInfo(image.shape[2], image.shape[1], image.shape[0], str(image.dtype), crs, transform or Affine.identity(), "array")

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        rows = slice(int(window.row_off), int(window.row_off + window.height))
        cols = slice(int(window.col_off), int(window.col_off + window.width))
        return self.image[:, rows, cols].astype(np.float32, copy=False), self.valid[rows, cols]
