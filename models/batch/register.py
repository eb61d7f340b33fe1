"""One flag register for the whole run: every scene's flags in one GeoPackage, in one CRS, each counted once.

**Overlaps.** Where scenes overlap, the same building is found in each of them, as slightly
different polygons (and cut off where it crosses a scene's edge). Two flags of one kind from two
scenes are *copies* when they overlap by at least half of the smaller one's area. Of a set of
copies the register keeps the one that lies deepest inside its own scene (its representative point
furthest from the scene's edge, so the least likely to be cut off) and leaves the others out: no
flag is counted twice, and no flag is lost, since a copy is left out only for another that is kept.
Flags of one scene never remove each other. Only flags that touch another scene's footprint are
compared; the rest go straight into the register. Depths are measured in the register CRS
(longitudes scaled by cos(latitude) when it is geographic). Scenes without a CRS (PNG/JPEG) cannot
overlap anything known: their flags are kept, with an empty geometry (their pixel outlines are in
the scene's own files). Left-out copies stay in their scene's flags.geojson.

Layers: `flags` (scene_id, flag_id, kind, after_date, before_date, area_m2, confidence,
suspected_illegal, reason, before_class) and `scenes` (footprints with their counts). Written to a
hidden file and renamed, so a reader never sees half a register.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
from rasterio.crs import CRS
from shapely.geometry import shape

from landsentry.models.batch.worker import SCENES, WGS84
from landsentry.models.io.geojson import reproject
from landsentry.models.vocabulary.kinds import CHANGE_KIND_NAMES, KIND_NAMES

REGISTER = "flags.gpkg"
FLAG_FIELDS = ("scene_id", "flag_id", "kind", "after_date", "before_date", "area_m2", "confidence", "suspected_illegal",
               "reason", "before_class")
SCENE_FIELDS = ("scene_id", "after_date", "before_date", "area_km2", "flags", "flags_in_register", "suspected_in_register")


COPY_SHARE = 0.5
"""Two flags of one kind from two scenes are copies when their intersection is at least this share of the smaller."""


def depth_inside(points: np.ndarray, outline: shapely.Geometry, geographic: bool) -> np.ndarray:
    """Distance of each point from the outline's edge (x scaled by cos(latitude) in a geographic CRS)."""
    if geographic:
        factor = float(np.cos(np.radians(shapely.centroid(outline).y)))
        points, outline = (shapely.transform(g, lambda xy: xy * [factor, 1.0]) for g in (points, outline))
    return shapely.distance(points, shapely.boundary(outline))


@dataclass
class Candidates:
    """Flags that touch another scene's footprint, gathered over all scenes for one comparison."""

    scene: list[str] = field(default_factory=list)
    record: list[dict] = field(default_factory=list)
    props: list[dict] = field(default_factory=list)
    geoms: list[shapely.Geometry] = field(default_factory=list)
    depth: list[float] = field(default_factory=list)

    def add(self, scene_id: str, record: dict, props: list[dict], geoms: np.ndarray, depth: np.ndarray) -> None:
        self.scene += [scene_id] * len(props)
        self.record += [record] * len(props)
        self.props += props
        self.geoms += list(geoms)
        self.depth += list(depth)

    def kept(self) -> np.ndarray:
        """True for the copy of each set that is kept: deepest first, unless a kept copy from another scene covers it."""
        n = len(self.props)
        keep = np.zeros(n, bool)
        if not n:
            return keep
        geoms = np.array(self.geoms, dtype=object)
        geoms = np.where(shapely.is_valid(geoms), geoms, shapely.make_valid(geoms))
        left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
        scene, kind = np.array(self.scene, dtype=object), np.array([p["kind"] for p in self.props], dtype=object)
        pair = (scene[left] != scene[right]) & (kind[left] == kind[right])
        left, right = left[pair], right[pair]
        shared = shapely.area(shapely.intersection(geoms[left], geoms[right]))
        smaller = np.minimum(shapely.area(geoms[left]), shapely.area(geoms[right]))
        copy = shared >= COPY_SHARE * smaller
        copies: dict[int, list[int]] = {}
        for i, j in zip(left[copy], right[copy]):
            copies.setdefault(int(i), []).append(int(j))
        order = sorted(range(n), key=lambda i: (-self.depth[i], self.scene[i], self.props[i]["id"]))
        for i in order:
            keep[i] = not any(keep[j] for j in copies.get(i, ()))
        return keep


@dataclass
class Tally:
    """Counts and areas per kind over the kept flags (the province summary)."""

    rows: dict[str, dict] = field(default_factory=lambda: {k: _zero(k) for k in (*KIND_NAMES, *CHANGE_KIND_NAMES)})

    def add(self, kind: str, area: float | None, suspected: bool) -> None:
        row = self.rows.setdefault(kind, _zero(kind))
        row["count"] += 1
        row["area_m2"] += area or 0.0
        row["suspected_illegal_count"] += int(suspected)
        row["suspected_illegal_area_m2"] += (area or 0.0) if suspected else 0.0

    def as_rows(self) -> list[dict]:
        return [{k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()} for row in self.rows.values()]


def _zero(kind: str) -> dict:
    return {"kind": kind, "count": 0, "area_m2": 0.0, "suspected_illegal_count": 0, "suspected_illegal_area_m2": 0.0}


@dataclass
class RegisterResult:
    path: Path
    crs: str
    flags: int
    duplicates_dropped: int
    per_scene: dict[str, dict]
    province: list[dict]


def _scene_flags(outdir: Path, scene_id: str) -> tuple[list[dict], list[shapely.Geometry]]:
    collection = json.loads((outdir / SCENES / scene_id / "flags.geojson").read_text())
    features = collection.get("features", [])
    return [f["properties"] for f in features], [shape(f["geometry"]) for f in features]


def _columns(scene_id: str, record: dict, props: list[dict]) -> list[np.ndarray]:
    def column(values: list, dtype=object) -> np.ndarray:
        return np.array(values, dtype=dtype)

    return [column([scene_id] * len(props)), column([p["id"] for p in props], np.int64), column([p["kind"] for p in props]),
            column([record.get("after_date")] * len(props)), column([record.get("before_date")] * len(props)),
            column([np.nan if p["area_m2"] is None else p["area_m2"] for p in props], float),
            column([np.nan if p["confidence"] is None else p["confidence"] for p in props], float),
            column([bool(p["suspected_illegal"]) for p in props], bool), column([p["reason"] for p in props]),
            column([p.get("before_class") for p in props])]


class RegisterWriter:
    """Appends flags to the GeoPackage's `flags` layer and keeps the per-scene and per-kind counts."""

    def __init__(self, path: str, crs: CRS) -> None:
        self.path, self.common = path, {"driver": "GPKG", "crs": crs.to_wkt(), "layer": "flags", "geometry_type": "MultiPolygon",
                                        "promote_to_multi": True}
        self.tally, self.per_scene, self.count = Tally(), {}, 0
        pyogrio.raw.write(path, np.array([], dtype=object), _columns("", {}, []), fields=list(FLAG_FIELDS), **self.common)

    def write(self, scene_id: str, record: dict, props: list[dict], geoms: np.ndarray) -> None:
        counts = self.per_scene.setdefault(scene_id, {"flags_in_register": 0, "suspected_in_register": 0})
        if not props:
            return
        wkb = np.array([None if g is None else shapely.to_wkb(g) for g in geoms], dtype=object)
        pyogrio.raw.write(self.path, wkb, _columns(scene_id, record, props), fields=list(FLAG_FIELDS), append=True, **self.common)
        for p in props:
            self.tally.add(p["kind"], p["area_m2"], bool(p["suspected_illegal"]))
        counts["flags_in_register"] += len(props)
        counts["suspected_in_register"] += sum(bool(p["suspected_illegal"]) for p in props)
        self.count += len(props)


def write_register(outdir: Path, records: list[dict], crs: CRS) -> RegisterResult:
    """flags.gpkg from the done scenes' records (as `run_scene` returns them), in `crs`, each flag once."""
    records = sorted(records, key=lambda r: r["id"])
    footprints = {r["id"]: reproject([shapely.from_wkt(r["footprint_wgs84"])], WGS84, crs)[0]
                  for r in records if r.get("footprint_wgs84")}
    ids = list(footprints)
    tree = shapely.STRtree(np.array([footprints[i] for i in ids], dtype=object)) if ids else None
    fd, tmp = tempfile.mkstemp(prefix=".flags.", suffix=".gpkg", dir=outdir)
    os.close(fd)
    os.unlink(tmp)  # GDAL creates the file itself
    try:
        writer, candidates, total = RegisterWriter(tmp, crs), Candidates(), 0
        for record in records:
            props, geoms = _scene_flags(outdir, record["id"])
            total += len(props)
            if not (record["id"] in footprints and geoms):
                writer.write(record["id"], record, props, [None] * len(props))
                continue
            moved = reproject(geoms, CRS.from_string(record["crs"]), crs)
            flag_index, shape_index = tree.query(moved, predicate="intersects")
            touching = np.zeros(len(props), bool)
            touching[flag_index[np.array(ids, dtype=object)[shape_index] != record["id"]]] = True
            writer.write(record["id"], record, [p for p, t in zip(props, touching) if not t], moved[~touching])
            depth = depth_inside(shapely.point_on_surface(moved[touching]), footprints[record["id"]], crs.is_geographic)
            candidates.add(record["id"], record, [p for p, t in zip(props, touching) if t], moved[touching], depth)
        groups: dict[str, list[int]] = {}
        for i in np.flatnonzero(candidates.kept()):
            groups.setdefault(candidates.scene[i], []).append(int(i))
        for scene_id, mine in sorted(groups.items()):
            writer.write(scene_id, candidates.record[mine[0]], [candidates.props[i] for i in mine], [candidates.geoms[i] for i in mine])
        _write_scenes_layer(tmp, records, footprints, writer.per_scene, {"driver": "GPKG", "crs": crs.to_wkt()})
        target = outdir / REGISTER
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return RegisterResult(target, crs.to_string(), writer.count, total - writer.count, writer.per_scene, writer.tally.as_rows())


def _write_scenes_layer(path: str, records: list[dict], footprints: dict, per_scene: dict, common: dict) -> None:
    records = sorted(records, key=lambda r: r["id"])
    wkb = np.array([shapely.to_wkb(footprints[r["id"]]) if r["id"] in footprints else None for r in records], dtype=object)
    data = [np.array([r["id"] for r in records], dtype=object),
            np.array([r.get("after_date") for r in records], dtype=object),
            np.array([r.get("before_date") for r in records], dtype=object),
            np.array([np.nan if r.get("area_km2") is None else r["area_km2"] for r in records], float),
            np.array([r.get("flags", 0) for r in records], np.int64),
            np.array([per_scene[r["id"]]["flags_in_register"] for r in records], np.int64),
            np.array([per_scene[r["id"]]["suspected_in_register"] for r in records], np.int64)]
    pyogrio.raw.write(path, wkb, data, fields=list(SCENE_FIELDS), layer="scenes", geometry_type="Polygon", **common)
