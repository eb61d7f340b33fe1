"""The published raster of what is reported: the raw raster with the regions below their minimum area taken out.

Both interpretations draw their flags from one raster (classes.tif for one date, change.tif for
two) and publish that raster so it holds exactly the pixels of the regions they report: the
polygons and the raster agree by one rule (`FlagRules`' minimum areas), applied once while the
raster is vectorised (`models.analysis.polygons.vectorize` hands each block over). A region that is
too small becomes `fill` (change.tif: 0, no change) or, for a class raster, the class that most of
its unflagged neighbours have, as GDAL's sieve filter does (background where it has none): a
speck of "building" in a field becomes field, not a hole.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio import features
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from landsentry.models.analysis.polygons import FOUR_CONNECTED
from landsentry.models.io.formats import quiet_georeferencing_warnings

SURROUNDINGS = None
"""`fill` value meaning: take the majority class of the region's unflagged neighbours."""


def fill_from_surroundings(classes: np.ndarray, erase: np.ndarray, flagged: list[int], nodata: int, background: int = 0) -> None:
    """Set the `erase` pixels of a class block, in place, to the majority unflagged class around each erased patch."""
    labels, n = ndimage.label(erase, structure=FOUR_CONNECTED)
    grown = ndimage.grey_dilation(labels, footprint=FOUR_CONNECTED)
    ring = (labels == 0) & (grown > 0) & ~np.isin(classes, flagged) & (classes != nodata)
    votes = np.bincount(grown[ring].astype(np.int64) * 256 + classes[ring], minlength=(n + 1) * 256).reshape(n + 1, 256)
    best = votes.argmax(axis=1).astype(np.uint8)
    best[votes.max(axis=1) == 0] = background
    classes[erase] = best[labels[erase]]


class RasterPublisher:
    """Writes `dst_path` from the blocks of `src_path` that `vectorize` hands over, counting its values.

    Use as a context manager around the `vectorize` call; `counts` then holds the published
    raster's pixel count per value (0..255) - class shares or change pixels, without reading it again.
    """

    def __init__(self, src_path: Path, dst_path: Path, flagged: list[int], fill: int | None = SURROUNDINGS) -> None:
        self.flagged, self.fill = list(flagged), fill
        self.counts = np.zeros(256, np.int64)
        with rasterio.open(src_path) as src:
            profile, colormap, self.nodata = src.profile, src.colormap(1), src.nodata
        quiet_georeferencing_warnings()  # plain images: a pixel grid, on purpose
        self.dst = rasterio.open(dst_path, "w+", **profile)
        self.dst.write_colormap(1, colormap)

    def _replace(self, classes: np.ndarray, erase: np.ndarray) -> None:
        if not erase.any():
            return
        if self.fill is SURROUNDINGS:
            nodata = 256 if self.nodata is None else int(self.nodata)
            fill_from_surroundings(classes, erase, self.flagged, nodata)
        else:
            classes[erase] = self.fill

    def write(self, window: Window, classes: np.ndarray, dropped: np.ndarray) -> None:
        self._replace(classes, dropped)
        self.dst.write(classes, 1, window=window)
        self.counts += np.bincount(classes.ravel(), minlength=256)

    def erase(self, geometries: list[BaseGeometry]) -> None:
        """Take out regions dropped after merging across blocks (pixel-exact outlines), in place."""
        for geometry in geometries:
            window = features.geometry_window(self.dst, [geometry], pad_x=1, pad_y=1)  # the ring around it too
            classes = self.dst.read(1, window=window)
            inside = features.geometry_mask([geometry], classes.shape, self.dst.window_transform(window), invert=True)
            erase = inside & np.isin(classes, self.flagged)
            before = np.bincount(classes[erase], minlength=256)
            self._replace(classes, erase)
            self.counts += np.bincount(classes[erase], minlength=256) - before
            self.dst.write(classes, 1, window=window)

    def __enter__(self) -> "RasterPublisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.dst.close()
