"""Class raster -> polygons with areas in m², block by block so large scenes stay in bounded memory.

Each block is vectorised on its own; polygons that touch an inner block edge are held back and
merged across blocks at the end, so a building cut by a block boundary comes out whole.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio import features
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from rasterio.windows import Window
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from models.classes import CLASS_NAMES


@dataclass
class Region:
    """One connected area of a class, in the raster's CRS."""

    class_id: int
    geometry: BaseGeometry
    area_m2: float | None = None
    confidence: float | None = None
    properties: dict = field(default_factory=dict)


def area_m2(geometry: BaseGeometry, crs: CRS | None, metric_pixels: bool) -> float | None:
    """Ground area in m²: exact in projected CRSs, equal-area reprojection for geographic ones.

    Without a CRS the coordinates are metres only when a ground sample distance was given
    (`metric_pixels`); otherwise the area is unknown (None).
    """
    if crs is None:
        return float(geometry.area) if metric_pixels else None
    if crs.is_geographic:
        c = geometry.centroid
        laea = CRS.from_proj4(f"+proj=laea +lat_0={c.y} +lon_0={c.x} +datum=WGS84 +units=m")
        return float(shape(transform_geom(crs, laea, mapping(geometry))).area)
    _, factor = crs.linear_units_factor
    return float(geometry.area) * factor * factor


def _block_regions(classes: np.ndarray, class_ids: list[int], transform) -> list[tuple[int, BaseGeometry]]:
    """(class id, polygon) for every 4-connected region of the given classes in one block."""
    out = []
    for cid in class_ids:
        mask = classes == cid
        if mask.any():
            for geom, _ in features.shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=transform):
                out.append((cid, shape(geom)))
    return out


def vectorize(
    class_path: Path,
    class_ids: list[int],
    min_area_m2: float,
    simplify_px: float = 1.0,
    metric_pixels: bool = True,
    block: int = 2048,
    confidence_path: Path | None = None,
) -> list[Region]:
    """Polygons of the given classes from a class GeoTIFF, merged across blocks, filtered and simplified."""
    finished: list[Region] = []
    pending: dict[int, list[BaseGeometry]] = {cid: [] for cid in class_ids}
    with rasterio.open(class_path) as ds:
        crs, H, W = ds.crs, ds.height, ds.width
        pixel = math.sqrt(abs(ds.transform.a * ds.transform.e - ds.transform.b * ds.transform.d))
        for row in range(0, H, block):
            for col in range(0, W, block):
                win = Window(col, row, min(block, W - col), min(block, H - row))
                classes = ds.read(1, window=win)
                wt = ds.window_transform(win)
                frame = _frame(win, wt)
                inner = _inner_edges(win, W, H)
                for cid, poly in _block_regions(classes, class_ids, wt):
                    if inner and _touches_edges(poly, frame, inner, pixel):
                        pending[cid].append(poly)
                    else:
                        finished.append(Region(cid, poly))
        for cid, polys in pending.items():
            if polys:
                merged = unary_union(polys)
                parts = list(getattr(merged, "geoms", [merged]))
                finished.extend(Region(cid, p) for p in parts if p.geom_type == "Polygon")
        regions = []
        for region in finished:
            region.area_m2 = area_m2(region.geometry, crs, metric_pixels)
            if region.area_m2 is not None and region.area_m2 < min_area_m2:
                continue
            if simplify_px > 0:
                simple = region.geometry.simplify(simplify_px * pixel, preserve_topology=True)
                # small and thin regions collapse under simplification (a 5-pixel L becomes 1 pixel):
                # keep those pixel-exact, so the polygon covers its pixels and matches area_m2
                if abs(simple.area - region.geometry.area) <= 0.005 * region.geometry.area:
                    region.geometry = simple
            regions.append(region)
    if confidence_path is not None:
        add_mean_confidence(regions, class_path, confidence_path)
    regions.sort(key=lambda r: -(r.area_m2 or r.geometry.area))
    return regions


def _frame(win: Window, transform) -> dict[str, float]:
    """The coordinate of each side of the block: x for left/right, y for top/bottom."""
    left, top = transform * (0, 0)
    right, bottom = transform * (win.width, win.height)
    return {"left": left, "right": right, "top": top, "bottom": bottom}


def _inner_edges(win: Window, W: int, H: int) -> dict[str, bool]:
    """Which sides of the block face another block (only those need merging)."""
    edges = {"left": win.col_off > 0, "right": win.col_off + win.width < W, "top": win.row_off > 0, "bottom": win.row_off + win.height < H}
    return {k: v for k, v in edges.items() if v}


def _touches_edges(poly: BaseGeometry, frame: dict[str, float], inner: dict[str, bool], pixel: float) -> bool:
    minx, miny, maxx, maxy = poly.bounds
    eps = pixel * 0.01
    # 'top' of the block is the max y in a north-up CRS but the min y on a plain pixel grid (PNG
    # without --gsd): the polygon lies inside the block, so it reaches a side when either of its
    # extremes along that axis is on it
    extremes = {"left": (minx, maxx), "right": (minx, maxx), "top": (miny, maxy), "bottom": (miny, maxy)}
    return any(min(abs(v - frame[k]) for v in extremes[k]) <= eps for k in inner)


def add_mean_confidence(regions: list[Region], class_path: Path, confidence_path: Path) -> None:
    """Mean per-pixel confidence (0..1) inside each region, read from just that region's window."""
    with rasterio.open(class_path) as cls_ds, rasterio.open(confidence_path) as conf_ds:
        for region in regions:
            # pixel window of the region for any grid orientation (from_bounds needs north-up, a PNG's grid is not)
            win = features.geometry_window(cls_ds, [region.geometry])
            if win.width < 1 or win.height < 1:
                continue
            classes = cls_ds.read(1, window=win)
            conf = conf_ds.read(1, window=win)
            inside = features.geometry_mask([region.geometry], classes.shape, cls_ds.window_transform(win), invert=True, all_touched=True)
            sel = inside & (classes == region.class_id)
            if sel.any():
                region.confidence = round(float(conf[sel].mean()) / 100.0, 3)


def to_feature(region: Region, index: int, to_crs: CRS | None = None, from_crs: CRS | None = None) -> dict:
    """A GeoJSON feature; reprojected when `to_crs` is given."""
    geom = mapping(region.geometry)
    if to_crs is not None and from_crs is not None and to_crs != from_crs:
        geom = transform_geom(from_crs, to_crs, geom)
    props = {
        "id": index,
        "class": CLASS_NAMES[region.class_id],
        "area_m2": None if region.area_m2 is None else round(region.area_m2, 1),
        "confidence": region.confidence,
        **region.properties,
    }
    return {"type": "Feature", "id": index, "properties": props, "geometry": geom}
