"""Vector labels (GeoJSON polygons) rasterised onto an image's grid, for sources labelled by footprints.

SpaceNet ships building footprints, not masks: each polygon is burnt in as 1 and everything else as 0
on the image's own grid (reprojected from the file's CRS, repaired where invalid; the permits
reader does the GeoJSON and CRS work). A layout's `codes` then say what 1 and 0 mean, e.g. building
and "not building" for a source whose footprints are complete.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio import features
from rasterio.errors import NotGeoreferencedWarning
from shapely.geometry import mapping

from landsentry.models.io.permits import load_permits

VECTOR_SUFFIXES = (".geojson", ".json")


def is_vector(path: Path) -> bool:
    return path.suffix.lower() in VECTOR_SUFFIXES


def rasterize_polygons(vector: Path, image: Path) -> np.ndarray:
    """uint8 H x W on `image`'s grid: 1 inside any polygon of `vector`, 0 elsewhere."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(image) as ds:
            crs, transform, shape = ds.crs, ds.transform, (ds.height, ds.width)
    area = load_permits(vector, crs).area
    parts = [mapping(g) for g in getattr(area, "geoms", [area])]
    return features.rasterize(parts, out_shape=shape, transform=transform, fill=0, default_value=1, dtype="uint8")
