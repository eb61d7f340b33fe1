"""Class raster -> polygons with areas in m², block by block so large scenes stay in bounded memory.

Each block is read once and vectorised on its own; components are labelled first and those too
small to matter never become polygons (most of a scene's regions are specks). Polygons that touch
an inner block edge are held back and merged across blocks at the end, so a building cut by a
block boundary comes out whole.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
import shapely
from rasterio import features
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from rasterio import windows as rio_windows
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

from landsentry.models.io.formats import quiet_georeferencing_warnings
from landsentry.models.vocabulary.classes import CLASS_NAMES


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


def min_pixels_for(min_area_m2: float, crs: CRS | None, transform, metric_pixels: bool, bounds: tuple[float, float, float, float] | None = None) -> int:
    """The fewest pixels a region must have to reach `min_area_m2` (0: no pixel-count bound is known).

    A region of n pixels covers exactly n pixel areas, so components with fewer pixels than this
    can be dropped before they are ever turned into polygons. For geographic CRSs the largest
    ground size of a pixel over `bounds` is used, so the bound never drops a large-enough region.
    """
    if min_area_m2 <= 0:
        return 0
    pixel_deg2 = abs(transform.a * transform.e - transform.b * transform.d)
    if crs is None:
        return math.ceil(min_area_m2 / pixel_deg2) if metric_pixels else 0
    if crs.is_geographic:
        if bounds is None:
            return 0
        lat = min(abs(bounds[1]), abs(bounds[3])) if bounds[1] * bounds[3] > 0 else 0.0  # nearest the equator
        metres_per_degree = 111_320.0 * 1.01  # a 1 % margin over the sphere's largest value
        largest = pixel_deg2 * metres_per_degree**2 * math.cos(math.radians(lat))
        return math.floor(min_area_m2 / largest)
    _, factor = crs.linear_units_factor
    return math.ceil(min_area_m2 / (pixel_deg2 * factor * factor) - 1e-9)

FOUR_CONNECTED = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected components of a boolean mask: int32 labels (0 outside) and pixel counts per label.

    4-connectivity, as GDAL's polygonize uses it here: one component is exactly one polygon.
    """
    labels, n = ndimage.label(mask, structure=FOUR_CONNECTED)
    return labels.astype(np.int32, copy=False), np.bincount(labels.ravel(), minlength=n + 1)


class BlockSink(Protocol):
    """Receives the blocks `vectorize` reads, to write a raster that agrees with the regions it keeps."""

    def write(self, window: Window, classes: np.ndarray, dropped: np.ndarray) -> None: ...

    def erase(self, geometries: list[BaseGeometry]) -> None: ...


@dataclass
class _Piece:
    """A region of one block with its confidence sum and pixel count (for means after merging)."""

    class_id: int
    geometry: BaseGeometry
    conf_sum: float = 0.0
    pixels: int = 0


def _polygon(rings: list) -> BaseGeometry:
    """A shapely Polygon from GeoJSON rings, built from arrays (3x faster than shapely.geometry.shape)."""
    shell, *holes = (shapely.linearrings(np.asarray(r, dtype=np.float64)) for r in rings)
    return shapely.polygons(shell, holes=np.array(holes, dtype=object) if holes else None)


def _edge_labels(labels: np.ndarray, inner: dict[str, bool]) -> np.ndarray:
    """Labels of the components on the block's sides that face another block (they may continue there)."""
    sides = {"top": labels[0], "bottom": labels[-1], "left": labels[:, 0], "right": labels[:, -1]}
    found = np.unique(np.concatenate([sides[k] for k in inner])) if inner else np.zeros(0, np.int32)
    return found[found > 0]


def _block_pieces(classes: np.ndarray, conf: np.ndarray | None, class_ids: list[int], min_pixels: dict[int, int],
                  inner: dict[str, bool], transform, dropped: np.ndarray | None = None) -> tuple[list[_Piece], list[_Piece]]:
    """(finished, continuing) regions of the given classes in one block; the pixels of components too
    small to keep are marked in `dropped` when it is given.

    Components are labelled per class first, so the many too small to reach their minimum are
    dropped before they become polygons, and each polygon's pixel count and confidence sum come from
    its label. The kept components of all classes share one label image, polygonised in one pass.
    Continuing ones touch a side facing another block and are kept whatever their size here.
    """
    combined = np.zeros(classes.shape, np.int32)
    owner, pixels, sums, continues = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)], [np.zeros(1)], [np.zeros(1, bool)]
    count = 0
    for cid in class_ids:
        mask = classes == cid
        if not mask.any():
            continue
        labels, counts = label_components(mask)
        keep = counts >= max(1, min_pixels.get(cid, 0))
        keep[0] = False
        edge = np.zeros_like(keep)
        edge[_edge_labels(labels, inner)] = True
        keep |= edge
        if dropped is not None:
            dropped |= mask & ~keep[labels]
        kept = np.flatnonzero(keep)
        if not len(kept):
            continue
        renumber = np.zeros(len(counts), np.int32)
        renumber[kept] = np.arange(count + 1, count + 1 + len(kept), dtype=np.int32)
        np.maximum(combined, renumber[labels], out=combined)  # the classes' masks are disjoint
        total = np.bincount(labels.ravel(), weights=conf.ravel(), minlength=len(counts)) if conf is not None else np.zeros(len(counts))
        owner.append(np.full(len(kept), cid))
        pixels.append(counts[kept])
        sums.append(total[kept])
        continues.append(edge[kept])
        count += len(kept)
    if not count:
        return [], []
    owner_, pixels_, sums_, continues_ = (np.concatenate(x) for x in (owner, pixels, sums, continues))
    finished: list[_Piece] = []
    continuing: list[_Piece] = []
    for geom, value in features.shapes(combined, mask=combined > 0, connectivity=4, transform=transform):
        i = int(value)
        piece = _Piece(int(owner_[i]), _polygon(geom["coordinates"]), float(sums_[i]), int(pixels_[i]))
        (continuing if continues_[i] else finished).append(piece)
    return finished, continuing


def _groups(n: int, a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    """Connected groups of 0..n-1 given the pairs (a[i], b[i]) that touch (union-find)."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(a.tolist(), b.tolist()):
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[ri] = rj
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _merge(pending: list[_Piece]) -> list[_Piece]:
    """Union the block pieces that touch inner block edges, per class and per group of touching
    pieces (one union over everything costs several times more); sums and counts follow their pieces."""
    merged: list[_Piece] = []
    for cid in sorted({p.class_id for p in pending}):
        pieces = [p for p in pending if p.class_id == cid]
        geoms = [p.geometry for p in pieces]
        touching = STRtree(geoms).query(geoms, predicate="intersects")
        for group in _groups(len(pieces), touching[0], touching[1]):
            if len(group) == 1:
                merged.append(pieces[group[0]])
                continue
            union = shapely.union_all([geoms[i] for i in group])
            parts = [g for g in getattr(union, "geoms", [union]) if g.geom_type == "Polygon"]
            wholes = [_Piece(cid, g) for g in parts]
            points = [geoms[i].representative_point() for i in group]
            for k, part in zip(*STRtree(parts).query(points, predicate="intersects")):
                wholes[part].conf_sum += pieces[group[k]].conf_sum
                wholes[part].pixels += pieces[group[k]].pixels
            merged.extend(wholes)
    return merged


def vectorize(
    class_path: Path,
    class_ids: list[int],
    min_area_m2: float | Mapping[int, float],
    simplify_px: float = 1.0,
    metric_pixels: bool = True,
    block: int = 2048,
    confidence_path: Path | None = None,
    min_pixels: int = 0,
    publish: "BlockSink | None" = None,
) -> list[Region]:
    """Polygons of the given classes from a class GeoTIFF, merged across blocks, filtered and simplified.

    `min_area_m2` is one minimum for all classes or one per class id; `min_pixels` drops regions
    of fewer pixels whatever the units (for rasters without ground units). Each block is read once
    for all classes; components too small to reach their minimum are dropped before they
    become polygons. With `confidence_path`, each region's mean confidence (0..1) over its pixels.

    With `publish`, every block is handed to it with the pixels of the components that were not
    kept (`publish.write`), and the pixel-exact outlines of pieces dropped only after merging across
    blocks (`publish.erase`): what it writes then holds exactly the returned regions' pixels.
    """
    minimum = {cid: float(min_area_m2[cid] if isinstance(min_area_m2, Mapping) else min_area_m2) for cid in class_ids}
    quiet_georeferencing_warnings()  # features.shapes makes datasets without a transform, in the pool's threads
    with rasterio.open(class_path) as ds:
        crs, H, W, transform = ds.crs, ds.height, ds.width, ds.transform
        bounds = tuple(ds.bounds)
    pixel = math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))
    fewest = {cid: max(min_pixels, min_pixels_for(minimum[cid], crs, transform, metric_pixels, bounds)) for cid in class_ids}
    windows = [Window(col, row, min(block, W - col), min(block, H - row)) for row in range(0, H, block) for col in range(0, W, block)]

    def pieces(win: Window) -> tuple[list[_Piece], list[_Piece], np.ndarray, np.ndarray | None]:
        # each block opens its own handles: GDAL handles are not shared between threads
        with rasterio.open(class_path) as ds:
            classes = ds.read(1, window=win)
        conf = None
        if confidence_path is not None:
            with rasterio.open(confidence_path) as conf_ds:
                conf = conf_ds.read(1, window=win)
        dropped = np.zeros(classes.shape, bool) if publish is not None else None
        done, continuing = _block_pieces(classes, conf, class_ids, fewest, _inner_edges(win, W, H),
                                         rio_windows.transform(win, transform), dropped)
        return done, continuing, classes, dropped

    finished: list[_Piece] = []
    pending: list[_Piece] = []
    # blocks in parallel threads: labelling, GDAL and shapely release the GIL for much of their work
    # (1.4x on 2 cores); results come back in block order, so the output does not depend on timing
    with ThreadPoolExecutor(max_workers=min(len(windows), _cores())) as pool:
        for win, (done, continuing, classes, dropped) in zip(windows, pool.map(pieces, windows)):
            finished += done
            pending += continuing
            if publish is not None:
                publish.write(win, classes, dropped)
    finished.extend(_merge(pending))
    regions, late = [], []
    for piece in finished:
        region = Region(piece.class_id, piece.geometry, area_m2(piece.geometry, crs, metric_pixels))
        if piece.pixels < min_pixels or (region.area_m2 is not None and region.area_m2 < minimum[piece.class_id]):
            late.append(piece.geometry)
            continue
        if confidence_path is not None and piece.pixels:
            region.confidence = round(piece.conf_sum / piece.pixels / 100.0, 3)
        regions.append(region)
    if publish is not None:
        publish.erase(late)
    if simplify_px > 0:
        simplify(regions, simplify_px * pixel)
    regions.sort(key=lambda r: -(r.area_m2 or r.geometry.area))
    return regions


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def simplify(regions: list[Region], tolerance: float) -> None:
    """Simplify outlines in place (one call for all), except where that would change a region's area.

    Small and thin regions collapse under simplification (a 5-pixel L becomes 1 pixel): those stay
    pixel-exact, so the polygon covers its pixels and matches area_m2.
    """
    if not regions:
        return
    exact = np.array([r.geometry for r in regions], dtype=object)
    # Douglas-Peucker is ~10x faster than the topology-preserving variant on pixel outlines; the
    # rare outline it makes invalid is simplified again with topology preserved
    simple = shapely.simplify(exact, tolerance, preserve_topology=False)
    broken = ~shapely.is_valid(simple) | shapely.is_empty(simple)
    if broken.any():
        simple[broken] = shapely.simplify(exact[broken], tolerance, preserve_topology=True)
    before, after = shapely.area(exact), shapely.area(simple)
    for region, geom, a, b in zip(regions, simple, before, after):
        if abs(b - a) <= 0.005 * a:
            region.geometry = geom


def _inner_edges(win: Window, W: int, H: int) -> dict[str, bool]:
    """Which sides of the block face another block (only those need merging)."""
    edges = {"left": win.col_off > 0, "right": win.col_off + win.width < W, "top": win.row_off > 0, "bottom": win.row_off + win.height < H}
    return {k: v for k, v in edges.items() if v}


def region_properties(region: Region, index: int) -> dict:
    """A region's GeoJSON properties (its geometry is written by `models.geojson`)."""
    return {
        "id": index,
        "class": CLASS_NAMES[region.class_id],
        "area_m2": None if region.area_m2 is None else round(region.area_m2, 1),
        "confidence": region.confidence,
        **region.properties,
    }
