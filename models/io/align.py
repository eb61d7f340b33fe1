"""Two dates on one grid: open a before/after pair so that pixel (row, col) is the same place in both.

- GeoTIFF pairs are aligned on the ground. The analysis grid is the after image's grid cropped to
  the part the before image covers (the overlap). When the before image already lies on that grid
  (same CRS and pixel size, whole-pixel offset) it is read through a plain window; otherwise it is
  resampled onto it through a GDAL WarpedVRT, window by window (bounded memory, nothing written).
  Pixels of the overlap box that one date does not cover (a reprojected footprint is not a
  rectangle) or marks as nodata are invalid.
- PNG/JPEG pairs (and GeoTIFFs without a CRS) carry no ground position: they must have the same size
  and are taken as already registered.

Both sources expose what `Predictor.iter_strips` needs: `.info` (width, height, CRS, transform of
the analysis grid) and `.read(window) -> (float32 C x H x W in 0..255, bool H x W valid)`, with the
band choice, nodata and stretch rules of `models.io.raster.RasterSource`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from landsentry.models.vocabulary.errors import InputError
from landsentry.models.io.raster import RasterInfo, RasterSource
from landsentry.models.io.stretch import finite_mask, rgb_preview

MIN_OVERLAP_PX = 16
"""Fewer overlapping pixels than this along either axis is refused as "no usable overlap"."""
MIN_OVERLAP_SHARE = 0.1
"""A pair whose overlap covers less than this share of both images is refused as a sliver. Two dates
of one place cover mostly the same ground; neighbouring tiles of a grid or a mosaic overlap by a few
percent (1-5 % is usual), so an overlap under 10 % of the smaller image is a neighbour or a wrong
file, and the changes found in that strip would be mostly edge effects, not a comparison."""
SAME_GRID_TOLERANCE_PX = 1e-3
"""Offsets within this fraction of a pixel of a whole pixel count as the same grid (no resampling)."""


class WindowedSource:
    """A RasterSource seen through a pixel window: the analysis grid when it is a crop of the file's grid."""

    def __init__(self, source: RasterSource, window: Window, info: RasterInfo) -> None:
        self.source, self.window, self.info = source, window, info
        self.path, self.format, self.channels = source.path, source.format, source.channels

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        shifted = Window(window.col_off + self.window.col_off, window.row_off + self.window.row_off, window.width, window.height)
        return self.source.read(shifted)

    def preview(self, shape: tuple[int, int]) -> np.ndarray:
        return self.source.preview(shape, self.window)

    def close(self) -> None:
        self.source.close()


class WarpedSource:
    """A georeferenced RasterSource resampled onto another grid through a WarpedVRT.

    Bands, nodata and the 0..255 stretch are those of the original file (the stretch is computed on
    the whole original image, so both dates are scaled by their own statistics). Validity comes from
    the warper's alpha band: 0 where the source had nodata or does not reach.
    """

    def __init__(self, source: RasterSource, info: RasterInfo, resampling: Resampling) -> None:
        self.source, self.info = source, info
        self.path, self.format, self.channels = source.path, source.format, source.channels
        self.resampling = resampling
        self._plain = None
        ds = source.dataset
        tagged = [i + 1 for i, c in enumerate(ds.colorinterp) if c == ColorInterp.alpha]
        mask_alpha = source.alpha_band
        if tagged and mask_alpha is None:
            # a band tagged alpha that holds data (NIR, see RasterSource's band choice): the warper would
            # use it as transparency, so warp a plain VRT of the file that does not call it alpha
            self._plain = rasterio.open(_untagged_vrt(ds, source.info))
            ds = self._plain
        try:
            self._vrt = WarpedVRT(  # the source's grid as landsentry reads it (GCPs: their affine fit)
                ds, src_crs=source.info.crs, src_transform=source.info.transform,
                crs=info.crs, transform=info.transform, width=info.width, height=info.height,
                resampling=resampling, add_alpha=not tagged or mask_alpha is None,
            )
        except Exception as exc:  # GDAL cannot build a transformation between the two CRSs
            self.close()
            raise InputError(f"the before image ({source.name}) cannot be resampled onto the after image's grid: {exc}") from None
        # add_alpha appends the alpha band last; a real alpha band of the file stays where it is
        self._alpha = self._vrt.count if self._plain is not None or not tagged else mask_alpha

    def _read(self, window: Window, out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        kwargs: dict = {"window": window}
        try:
            with self.source.lock:  # the VRT reads through the source's GDAL handle
                if out_shape:
                    kwargs["out_shape"] = (len(self.source.band_indexes),) + out_shape
                data = self._vrt.read(self.source.band_indexes, **kwargs)
                if out_shape:
                    kwargs["out_shape"] = out_shape
                valid = self._vrt.read(self._alpha, **kwargs) > 0
        except Exception as exc:
            raise InputError(f"the before image ({self.source.name}) could not be resampled at rows "
                             f"{window.row_off}-{window.row_off + window.height}: {exc}") from None
        finite = finite_mask(data)
        return data, valid if finite is None else valid & finite

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        raw, valid = self._read(window)
        return self.source.to_255(raw), valid

    def preview(self, shape: tuple[int, int]) -> np.ndarray:
        raw, _ = self._read(Window(0, 0, self.info.width, self.info.height), out_shape=shape)
        return rgb_preview(self.source.to_255(raw))

    def close(self) -> None:
        if getattr(self, "_vrt", None) is not None:
            self._vrt.close()
        if self._plain is not None:
            self._plain.close()
        self.source.close()


def _untagged_vrt(ds, info: RasterInfo) -> str:
    """VRT XML of a dataset on its grid `info` with every band's colour interpretation 'Undefined' (no alpha)."""
    from xml.sax.saxutils import escape

    t = info.transform
    bands = []
    for i, dtype in enumerate(ds.dtypes, start=1):
        nodata = f"<NoDataValue>{ds.nodata!r}</NoDataValue>" if ds.nodata is not None else ""
        bands.append(
            f'<VRTRasterBand dataType="{_gdal_type(dtype)}" band="{i}"><ColorInterp>Undefined</ColorInterp>{nodata}'
            f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(Path(ds.name).resolve()))}</SourceFilename>'
            f"<SourceBand>{i}</SourceBand></SimpleSource></VRTRasterBand>"
        )
    return (f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}"><SRS>{escape(info.crs.to_wkt())}</SRS>'
            f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>{''.join(bands)}</VRTDataset>")


def _gdal_type(dtype: str) -> str:
    return {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
            "float32": "Float32", "float64": "Float64", "int8": "Int8"}.get(dtype, "Float32")


@dataclass
class AlignedPair:
    """Before and after on one analysis grid (`info`), plus how they got there."""

    before: RasterSource | WindowedSource | WarpedSource
    after: RasterSource | WindowedSource
    info: RasterInfo
    window: Window
    """The analysis grid as a window of the after image (the whole image when before covers it)."""
    resampled: bool
    """Whether the before image was resampled (CRS, pixel size or sub-pixel offset differ)."""
    overlap: dict[str, float] | None = None
    """Share of each image's area inside the overlap (`overlap_shares`); both 1.0 for plain pairs."""

    def describe(self) -> dict:
        w = self.window
        return {
            "after_window": {"col_off": int(w.col_off), "row_off": int(w.row_off), "width": int(w.width), "height": int(w.height)},
            "before_resampled": self.resampled,
            "before_resampling": getattr(self.before, "resampling", None) and self.before.resampling.name,
            "overlap_share": self.overlap or {"after": 1.0, "before": 1.0},
        }

    def close(self) -> None:
        self.before.close()
        self.after.close()

    def __enter__(self) -> "AlignedPair":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_pair(
    before: str | Path,
    after: str | Path,
    channels: int = 3,
    bands: list[int] | None = None,
    gsd: float | None = None,
    names: dict[str, str] | None = None,
    bands_option: str = "--bands",
) -> AlignedPair:
    """Open and align a before/after pair; every mismatch a user can cause is an InputError.
    `names` ("before", "after"): how messages call the files (default: their names)."""
    names = names or {}
    after_src = RasterSource(after, channels=channels, bands=bands, gsd=gsd, name=names.get("after"), bands_option=bands_option)
    try:
        before_src = RasterSource(before, channels=channels, bands=bands, gsd=gsd, name=names.get("before"), bands_option=bands_option)
    except BaseException:
        after_src.close()
        raise
    try:
        return _align(before_src, after_src)
    except BaseException:
        before_src.close()
        after_src.close()
        raise


def _align(before: RasterSource, after: RasterSource) -> AlignedPair:
    b, a = before.info, after.info
    if b.georeferenced != a.georeferenced:
        which = (_said(before, "before"), _said(after, "after"))
        which = which if b.georeferenced else which[::-1]
        raise InputError(
            f"{which[0]} is georeferenced but {which[1]} is not: both dates must be "
            "GeoTIFFs with a CRS (aligned on the ground) or both plain images of the same size"
        )
    nb, na = before.data_band_count, after.data_band_count
    if nb != na:
        raise InputError(
            f"the dates have different band counts: {_said(before, 'before')} has {nb} band(s), "
            f"{_said(after, 'after')} has {na}; compare images of the same kind (e.g. both RGB, or both RGB+NIR)"
        )
    if not a.georeferenced:
        if (b.width, b.height) != (a.width, a.height):
            raise InputError(
                f"{_said(before, 'before')} is {b.width}x{b.height} px but {_said(after, 'after')} is {a.width}x{a.height} px: "
                "images without georeferencing (PNG/JPEG) must have the same size to be compared pixel by pixel"
            )
        return AlignedPair(before, after, a, Window(0, 0, a.width, a.height), resampled=False)
    window, shares = overlap_window(before, after)
    info = RasterInfo(int(window.width), int(window.height), a.count, a.dtype, a.crs,
                      a.transform @ Affine.translation(window.col_off, window.row_off), a.driver)
    whole = (window.col_off, window.row_off, window.width, window.height) == (0, 0, a.width, a.height)
    after_view: RasterSource | WindowedSource = after if whole else WindowedSource(after, window, info)
    offset = _whole_pixel_offset(b, info)
    if offset is not None:
        col, row = offset
        before_view: RasterSource | WindowedSource | WarpedSource
        if (col, row, b.width, b.height) == (0, 0, info.width, info.height):
            before_view = before
        else:
            before_view = WindowedSource(before, Window(col, row, info.width, info.height), info)
        return AlignedPair(before_view, after_view, info, window, resampled=False, overlap=shares)
    return AlignedPair(WarpedSource(before, info, _resampling(b, info)), after_view, info, window, resampled=True, overlap=shares)


def _said(source: RasterSource, role: str) -> str:
    """How messages name one date: in the user's words, with the file's name."""
    return f"the {role} image ({source.name})"


def overlap_window(before: RasterSource, after: RasterSource) -> tuple[Window, dict[str, float]]:
    """The after image's pixels (a whole-pixel window) that the before image's footprint box covers, and
    the share of each image's area inside it; a sliver (`MIN_OVERLAP_SHARE`) is refused."""
    b, a = before.info, after.info
    said_b, said_a = _said(before, "before"), _said(after, "after")
    try:
        bounds = transform_bounds(b.crs, a.crs, *_bounds(b), densify_pts=21)
    except Exception as exc:
        raise InputError(f"cannot bring {said_b} ({b.crs}) into the CRS of {said_a} ({a.crs}): {exc}") from None
    if not all(map(math.isfinite, bounds)):
        raise InputError(f"{said_b} lies outside the area where the CRS of {said_a} ({a.crs}) is defined")
    left, bottom, right, top = bounds
    inverse = ~a.transform
    cols, rows = zip(*(inverse @ (x, y) for x in (left, right) for y in (bottom, top)))
    eps = 1e-6
    c0, c1 = max(0, math.floor(min(cols) + eps)), min(a.width, math.ceil(max(cols) - eps))
    r0, r1 = max(0, math.floor(min(rows) + eps)), min(a.height, math.ceil(max(rows) - eps))
    if c1 <= c0 or r1 <= r0:
        raise InputError(
            f"{said_b} and {said_a} do not overlap on the ground "
            f"(the before image covers {_fmt(bounds)}, the after image {_fmt(_bounds(a))} in {a.crs})"
        )
    if c1 - c0 < MIN_OVERLAP_PX or r1 - r0 < MIN_OVERLAP_PX:
        raise InputError(
            f"{said_b} and {said_a} overlap by only {c1 - c0}x{r1 - r0} pixels "
            f"(at least {MIN_OVERLAP_PX}x{MIN_OVERLAP_PX} needed)"
        )
    overlap = (c1 - c0) * (r1 - r0)
    before_px = max(1.0, (max(cols) - min(cols)) * (max(rows) - min(rows)))  # the before image's box, in after pixels
    shares = {"after": round(overlap / (a.width * a.height), 4), "before": round(min(1.0, overlap / before_px), 4)}
    if max(shares.values()) < MIN_OVERLAP_SHARE:
        raise InputError(
            f"{said_b} and {said_a} overlap on only {shares['after']:.1%} of the after image and {shares['before']:.1%} "
            f"of the before image (at least {MIN_OVERLAP_SHARE:.0%} of one of them needed): a neighbouring tile or another place?"
        )
    return Window(c0, r0, c1 - c0, r1 - r0), shares


def _bounds(info: RasterInfo) -> tuple[float, float, float, float]:
    t = info.transform
    xs, ys = zip(*(t @ (c, r) for c in (0, info.width) for r in (0, info.height)))
    return min(xs), min(ys), max(xs), max(ys)


def _fmt(bounds) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


def _whole_pixel_offset(before: RasterInfo, grid: RasterInfo) -> tuple[int, int] | None:
    """(col, row) of the grid's origin in the before image when the grid is a whole-pixel crop of it, else None."""
    if before.crs != grid.crs:
        return None
    bt, gt = before.transform, grid.transform
    if not all(math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12) for u, v in zip((bt.a, bt.b, bt.d, bt.e), (gt.a, gt.b, gt.d, gt.e))):
        return None
    col, row = ~bt @ (gt.c, gt.f)
    if abs(col - round(col)) > SAME_GRID_TOLERANCE_PX or abs(row - round(row)) > SAME_GRID_TOLERANCE_PX:
        return None
    col, row = int(round(col)), int(round(row))
    if col < 0 or row < 0 or col + grid.width > before.width or row + grid.height > before.height:
        return None  # the grid reaches past the before image: warp, which marks those pixels invalid
    return col, row


def _resampling(before: RasterInfo, grid: RasterInfo) -> Resampling:
    """Bilinear, or area averaging when the before image is much finer than the grid (no aliasing).

    Pixel sizes are compared on the ground (transform_bounds of one pixel is not needed: the ratio of
    the footprints' pixel counts does it for any pair of CRSs).
    """
    try:
        left, bottom, right, top = transform_bounds(before.crs, grid.crs, *_bounds(before), densify_pts=21)
    except Exception:
        return Resampling.bilinear
    before_px = abs((right - left) * (top - bottom)) / max(1, before.width * before.height)
    return Resampling.average if before_px * 2.25 < grid.pixel_area else Resampling.bilinear
