"""The flag register: every finished interpretation's flags in the database, queried across jobs.

A job's flags (JOB/out/flags.geojson, in its image's CRS) are recorded with their geometry in
WGS84 (lon/lat, RFC 7946) and its bounding box in four indexed columns, which the bbox query narrows
by before the exact test (shapely: the geometry intersects the box). Flags of images without
georeferencing have no place on Earth: they are recorded without a geometry and never match a bbox.
The dates are the images' own (TIFF DateTime or EXIF DateTimeOriginal), null when they carry none.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import shapely
from shapely.geometry import box, shape

from landsentry.models.vocabulary.errors import InputError

from landsentry.api.inference import input_path
from landsentry.api.store import Store

DATE_TAGS = ("TIFFTAG_DATETIME", "EXIF_DateTimeOriginal", "EXIF_DateTime", "ACQUISITIONDATETIME")
PAGE = 500


def image_date(path: Path | None) -> str | None:
    """The date an image file says it was taken or made (YYYY-MM-DD), or None."""
    if path is None:
        return None
    import rasterio

    try:
        with rasterio.open(path) as src:
            tags = {**src.tags(), **src.tags(ns="EXIF")}
    except Exception:
        return None
    for tag in DATE_TAGS:
        text = (tags.get(tag) or "").strip()
        if len(text) >= 10 and text[:4].isdigit():
            return text[:10].replace(":", "-")
    return None


def flag_records(job_dir: Path, result: dict) -> list[dict]:
    """The register's rows for a finished interpretation (its flags file read back, reprojected to WGS84)."""
    from rasterio.crs import CRS

    from landsentry.models.io.geojson import reproject

    path = job_dir / "out" / "flags.geojson"
    if not path.is_file():
        return []
    features = json.loads(path.read_text()).get("features") or []
    crs_text = (result.get("grid") or {}).get("crs")
    geometries = [shape(f["geometry"]) for f in features]
    if crs_text and geometries:
        geometries = list(reproject(geometries, CRS.from_string(crs_text), CRS.from_epsg(4326)))
    dates = {role: image_date(input_path(job_dir, role)) for role in ("after", "before")}
    rows = []
    for feature, geometry in zip(features, geometries):
        props = feature.get("properties") or {}
        placed = bool(crs_text) and not geometry.is_empty
        minx, miny, maxx, maxy = geometry.bounds if placed else (None,) * 4
        rows.append({"kind": props.get("kind"), "area_m2": props.get("area_m2"), "confidence": props.get("confidence"),
                     "suspected": int(bool(props.get("suspected_illegal"))), "reason": props.get("reason") or "",
                     "before_class": props.get("before_class"), "geometry": shapely.to_geojson(geometry) if placed else None,
                     "minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy,
                     "after_date": dates["after"], "before_date": dates["before"]})
    return rows


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """'minlon,minlat,maxlon,maxlat' (WGS84 degrees) -> numbers; anything else is refused with the reason."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"bbox: four numbers minlon,minlat,maxlon,maxlat (WGS84 degrees), not {text[:60]!r}") from None
    if len(values) != 4 or not all(map(lambda v: v == v and abs(v) != float("inf"), values)):
        raise InputError(f"bbox: four numbers minlon,minlat,maxlon,maxlat (WGS84 degrees), not {text[:60]!r}")
    minx, miny, maxx, maxy = values
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise InputError(f"bbox: needs -180 <= minlon <= maxlon <= 180 and -90 <= minlat <= maxlat <= 90, got {text[:60]!r}")
    return minx, miny, maxx, maxy


def stamp(moment: datetime) -> str:
    """A datetime as the store writes times (UTC, milliseconds, Z), so text comparison is time order."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def feature(row: dict) -> dict:
    return {"type": "Feature", "id": row["id"], "geometry": json.loads(row["geometry"]) if row["geometry"] else None,
            "properties": {"kind": row["kind"], "area_m2": row["area_m2"], "confidence": row["confidence"],
                           "suspected_illegal": bool(row["suspected"]), "reason": row["reason"], "before_class": row["before_class"],
                           "job": row["job"], "after_date": row["after_date"], "before_date": row["before_date"],
                           "recorded": row["created"]}}


def query_flags(store: Store, bbox: tuple[float, float, float, float] | None = None, kind: str | None = None,
                suspected: bool | None = None, since: datetime | None = None, limit: int = 1000) -> dict:
    """Flags across jobs, oldest first: intersecting `bbox`, of `kind`, (not) suspected, recorded at or after
    `since`; at most `limit` (then `truncated`)."""
    where, args = [], []
    if bbox is not None:
        where.append("geometry IS NOT NULL AND maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?")
        args += [bbox[0], bbox[2], bbox[1], bbox[3]]
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    if suspected is not None:
        where.append("suspected = ?")
        args.append(int(suspected))
    if since is not None:
        where.append("created >= ?")
        args.append(stamp(since))
    area = box(*bbox) if bbox is not None else None
    found: list[dict] = []
    last = 0
    while len(found) <= limit:
        page = store.flag_rows(" AND ".join(["id > ?", *where]), (last, *args), PAGE)
        for row in page:
            if area is None or shapely.from_geojson(row["geometry"]).intersects(area):
                found.append(row)
        if len(page) < PAGE:
            break
        last = page[-1]["id"]
    return {"type": "FeatureCollection", "features": [feature(r) for r in found[:limit]], "truncated": len(found) > limit}
