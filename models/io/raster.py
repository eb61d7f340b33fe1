"""Raster input: open PNG/JPEG/GeoTIFF safely and read it window by window as model-ready bands.

Formats are recognised by their magic bytes, never by the file name. Pixel limits are checked from
the header before anything is decoded (decompression-bomb guard). GeoTIFFs are read window by window;
PNG and JPEG cannot be read partially, so they are decoded once under a tighter limit.
Every failure a user can cause becomes an `InputError` with a message, not a traceback.
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
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from landsentry.models.vocabulary.errors import InputError, TooLargeError, UnsupportedMediaError

MAX_PIXELS = int(os.environ.get("LANDSENTRY_MAX_PIXELS", 2_000_000_000))
"""Largest GeoTIFF (width x height) accepted; streamed, so this bounds run time, not memory."""
MAX_DECODED_PIXELS = int(os.environ.get("LANDSENTRY_MAX_DECODED_PIXELS", 150_000_000))
"""Largest PNG/JPEG accepted; these are decoded whole, so this bounds memory (~600 MB at RGB)."""
STRETCH_PERCENTILES = (2.0, 98.0)
os.environ.setdefault("GDAL_CACHEMAX", "128")
"""GDAL's block cache in MB (its default is 5 % of RAM): blocks of a large scene are read and
written in order, a row of windows at a time, so a bigger cache mostly adds resident memory (1.2 GB
of it on a 400 Mpx scene). Set GDAL_CACHEMAX yourself to override; it is read when GDAL first caches a block."""
_READ_ERRORS = (RasterioError, CPLE_BaseError)  # GDAL's CPLE_* errors do not subclass RasterioError

_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "GTiff",
    b"MM\x00*": "GTiff",
    b"II+\x00": "GTiff",  # BigTIFF
    b"MM\x00+": "GTiff",
}


def sniff_format(path: Path) -> str:
    """'PNG', 'JPEG' or 'GTiff' from the first bytes; refuses empty, missing and other files."""
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    with path.open("rb") as fh:
        head = fh.read(8)
    if not head:
        raise InputError(f"{path.name} is empty (0 bytes)")
    for magic, fmt in _MAGIC.items():
        if head.startswith(magic):
            return fmt
    raise UnsupportedMediaError(f"{path.name} is not a PNG, JPEG or GeoTIFF image (unrecognised file header)")


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


def scale_to_255(raw: np.ndarray, stretch: tuple[float, float] | None) -> np.ndarray:
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


class RasterSource:
    """An input image opened for windowed reading of `channels` model bands scaled to 0..255.

    1-band input is repeated to fill 3 channels (panchromatic); 4-band input is read as R, G, B
    (+ NIR when the model takes 4 bands); an alpha band or nodata value becomes the validity mask.
    `bands` (1-based) picks bands explicitly for other layouts.
    """

    def __init__(self, path: str | Path, channels: int = 3, bands: list[int] | None = None, gsd: float | None = None) -> None:
        self.path = Path(path)
        self.format = sniff_format(self.path)
        self.lock = threading.Lock()  # one GDAL handle: reads from prefetch threads take turns
        self._dataset = None
        self._array: np.ndarray | None = None  # decoded PNG/JPEG, C x H x W
        self._alpha: np.ndarray | None = None
        try:
            if self.format == "GTiff":
                self._open_geotiff(gsd)
            else:
                self._open_picture(gsd)
            self.channels = channels
            self.band_indexes = self._choose_bands(bands, channels)
            self._stretch = self._compute_stretch()
        except BaseException:  # refused after opening (size, bands, unreadable): do not leak the file
            self.close()
            raise

    # --- opening -------------------------------------------------------------------------------
    def _open_geotiff(self, gsd: float | None) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = rasterio.open(self.path)
        except _READ_ERRORS as exc:
            raise InputError(f"{self.path.name} is not a readable GeoTIFF: {_short(exc)}") from None
        self._dataset = ds
        _check_pixels(self.path, ds.width, ds.height, MAX_PIXELS)
        transform, crs = ds.transform, ds.crs
        if crs is None and transform == Affine.identity() and gsd:
            transform = Affine(gsd, 0, 0, 0, -gsd, 0)
        elif crs is None and gsd:
            transform = Affine(gsd, 0, transform.c, 0, -gsd, transform.f)
        self._color = list(ds.colorinterp)
        self.info = RasterInfo(ds.width, ds.height, ds.count, ds.dtypes[0], crs, transform, "GTiff")

    def _open_picture(self, gsd: float | None) -> None:
        try:
            with warnings.catch_warnings():
                # Our own limit applies, checked before decoding; Pillow's global setting is left alone
                # (its bomb error, for sizes far past ours, is mapped to TooLargeError below).
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(self.path) as img:
                    width, height = img.size
                    _check_pixels(self.path, width, height, MAX_DECODED_PIXELS)
                    img.load()
                    array, has_alpha = _picture_to_array(img)
        except Image.DecompressionBombError as exc:
            raise TooLargeError(f"{self.path.name} is over the limit of {MAX_DECODED_PIXELS:,} decodable pixels: {_short(exc)}") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{self.path.name} is a damaged or truncated {self.format} image: {_short(exc)}") from None
        if has_alpha:
            self._alpha = array[-1] > 0
            array = array[:-1]
        self._array = array
        self._color = []
        transform = Affine(gsd, 0, 0, 0, -gsd, 0) if gsd else Affine.identity()
        self.info = RasterInfo(width, height, array.shape[0], str(array.dtype), None, transform, self.format)

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
                raise InputError(f"{self.path.name} has {count} band(s); --bands {bad} out of range")
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
                f"{self.path.name} has {len(data_bands)} data band(s); landsentry reads 1 (panchromatic), "
                f"3 (RGB) or 4 (RGB+NIR) bands for this {channels}-band model; pick bands with --bands"
            )
        self._alpha_band = alpha[0] if alpha else None
        return chosen

    def _holds_mask(self, band: int) -> bool:
        """Whether a band tagged alpha really is one: (nearly) only 0 and full-scale values, on a decimated read."""
        scale = max(1.0, max(self.info.width, self.info.height) / 256)
        shape = (max(1, int(self.info.height / scale)), max(1, int(self.info.width / scale)))
        try:
            values = self._dataset.read(band, out_shape=shape)
        except _READ_ERRORS as exc:
            raise InputError(f"{self.path.name} could not be read: {_short(exc)} (truncated or corrupt file?)") from None
        full = np.iinfo(values.dtype).max if values.dtype.kind in "ui" else 1
        return bool(np.isin(values, (0, 255, full)).mean() >= 0.99)

    # --- scaling -------------------------------------------------------------------------------
    def _compute_stretch(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-band (low, high) for non-8-bit data, from percentiles of a decimated read."""
        if self.info.dtype == "uint8":
            return None
        scale = max(self.info.width, self.info.height) / 1024
        shape = (max(1, int(self.info.height / max(scale, 1))), max(1, int(self.info.width / max(scale, 1))))
        raw, valid = self._read_raw(Window(0, 0, self.info.width, self.info.height), out_shape=shape)
        lows, highs = [], []
        for band in raw:
            values = band[valid & (band != 0)] if valid.any() else band.ravel()
            if values.size == 0:
                values = np.zeros(1)
            lo, hi = np.percentile(values, STRETCH_PERCENTILES)
            lows.append(lo)
            highs.append(hi if hi > lo else lo + 1)
        return np.array(lows, np.float32)[:, None, None], np.array(highs, np.float32)[:, None, None]

    # --- reading -------------------------------------------------------------------------------
    def _read_raw(self, window: Window, out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self._dataset is not None:
            try:
                kwargs = {"window": window}
                if out_shape:
                    kwargs["out_shape"] = (len(self.band_indexes),) + out_shape
                data = self._dataset.read(self.band_indexes, **kwargs)
                if out_shape:
                    kwargs["out_shape"] = out_shape
                if not self._gdal_masks:  # validity from nodata alone (see _choose_bands)
                    nodata = self._dataset.nodata
                    mask = np.ones(data.shape[1:], bool) if nodata is None else ~(
                        np.isnan(data) if np.isnan(nodata) else data == nodata).any(axis=0)
                    return data, mask
                mask = self._dataset.read_masks(self.band_indexes[0], **kwargs) > 0
                if self._alpha_band is None and len(set(self.band_indexes)) > 1:
                    for b in sorted(set(self.band_indexes))[1:]:
                        mask &= self._dataset.read_masks(b, **kwargs) > 0
            except _READ_ERRORS as exc:
                raise InputError(f"{self.path.name} could not be read at rows {window.row_off}-{window.row_off + window.height}: {_short(exc)} (truncated or corrupt file?)") from None
            return data, mask
        rows = slice(int(window.row_off), int(window.row_off + window.height))
        cols = slice(int(window.col_off), int(window.col_off + window.width))
        data = self._array[[b - 1 for b in self.band_indexes], rows, cols]
        mask = self._alpha[rows, cols] if self._alpha is not None else np.ones(data.shape[1:], bool)
        if out_shape:
            ys = np.linspace(0, data.shape[1] - 1, out_shape[0]).astype(int)
            xs = np.linspace(0, data.shape[2] - 1, out_shape[1]).astype(int)
            data, mask = data[:, ys][:, :, xs], mask[ys][:, xs]
        return data, mask

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Bands as float32 C x H x W in 0..255, and a bool H x W mask of valid (not nodata) pixels."""
        with self.lock:
            raw, valid = self._read_raw(window)
        return scale_to_255(raw, self._stretch), valid

    def preview(self, shape: tuple[int, int]) -> np.ndarray:
        """A decimated H x W x 3 uint8 view of the whole image (for overlays), read without full decoding."""
        with self.lock:
            raw, _ = self._read_raw(Window(0, 0, self.info.width, self.info.height), out_shape=shape)
        return rgb_preview(scale_to_255(raw, self._stretch))

    def close(self) -> None:
        if self._dataset is not None:
            self._dataset.close()
            self._dataset = None

    def __enter__(self) -> "RasterSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _picture_to_array(img: Image.Image) -> tuple[np.ndarray, bool]:
    """PIL image -> (C x H x W array in uint8, or uint16 for 16-bit PNG; whether the last band is alpha)."""
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


def _check_pixels(path: Path, width: int, height: int, limit: int) -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"{path.name} has no pixels ({width}x{height})")
    if width * height > limit:
        raise TooLargeError(
            f"{path.name} claims {width}x{height} = {width * height:,} pixels, over the limit of {limit:,} "
            "(set LANDSENTRY_MAX_PIXELS / LANDSENTRY_MAX_DECODED_PIXELS to raise it, or tile the image)"
        )


def _short(exc: BaseException) -> str:
    if exc.__cause__ is not None and "previous exception" in str(exc):  # rasterio: the GDAL error is the cause
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:240]


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
