"""Permitted parcels from a GeoJSON file, brought into the image's CRS.

Accepted: a FeatureCollection, a single Feature, or a bare Polygon/MultiPolygon geometry. The CRS is
the legacy `crs` member when there is one (`{"type": "name", "properties": {"name": "EPSG:26914"}}`
or an OGC URN), otherwise RFC 7946's WGS84 longitude/latitude - but coordinates outside ±180/±90
with no `crs` member cannot be lon/lat, and are refused rather than guessed. Invalid polygons (a
self-intersecting "bowtie", a ring drawn backwards) are repaired with shapely's `make_valid`; a
feature that is not a polygon, or cannot be read or repaired, is named in the error.

Parcels that all miss the image are refused (`require_on_image`): a wrong CRS, or parcels of
another area, would otherwise make every building look like it stands outside its permit.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_geom
from shapely import make_valid
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union
from shapely.prepared import prep

from landsentry.models.vocabulary.errors import InputError

WGS84 = CRS.from_epsg(4326)
MAX_PERMITS_BYTES = 200_000_000
POLYGONAL = ("Polygon", "MultiPolygon")


@dataclass
class Permits:
    """The union of all permitted parcels, in the image CRS."""

    area: BaseGeometry
    count: int
    source_crs: CRS
    path: Path | None = None
    repaired: list[int] = field(default_factory=list)
    """Indexes (0-based, in the file's feature order) of parcels whose geometry was repaired."""
    parcels: list[BaseGeometry] = field(default_factory=list)
    """Each parcel, in the image CRS."""
    name: str | None = None
    """How messages and summaries call the file (default: its name)."""
    on_image: int | None = None
    """Parcels that intersect the image (set by `require_on_image`)."""

    def __post_init__(self) -> None:
        self._prepared = prep(self.area)

    def outside_share(self, geometry: BaseGeometry) -> float:
        """Share (0..1) of the geometry's area that lies outside every parcel."""
        if geometry.is_empty or geometry.area <= 0:
            return 0.0
        if self._prepared.contains(geometry):
            return 0.0
        if not self._prepared.intersects(geometry):
            return 1.0
        return float(geometry.difference(self.area).area / geometry.area)

    def describe(self) -> dict:
        return {"file": self.name or (self.path.name if self.path else None), "parcels": self.count,
                "parcels_on_image": self.on_image, "crs": self.source_crs.to_string(), "repaired_features": self.repaired}

    def require_on_image(self, footprint: BaseGeometry, image: str) -> None:
        """Count the parcels that intersect the image's `footprint` (same CRS); refuse when none does."""
        self.on_image = sum(bool(p.intersects(footprint)) for p in self.parcels)
        if self.on_image == 0:
            left, bottom, right, top = self.area.bounds
            il, ib, ir, it = footprint.bounds
            raise InputError(
                f"permits file {self.name}: none of its {self.count} parcel(s) touches {image} (the parcels span "
                f"x {left:.6g}..{right:.6g}, y {bottom:.6g}..{top:.6g}; the image x {il:.6g}..{ir:.6g}, y {ib:.6g}..{it:.6g}, "
                f"in the image CRS); is the file's CRS ({self.source_crs.to_string()}) right, and is it the same area?")


def load_permits(path: str | Path, image_crs: CRS | None, name: str | None = None) -> Permits:
    """Read, check, repair and reproject the parcels of a permits GeoJSON file (`name`: how messages call it)."""
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise InputError(f"permits file not found: {path}")
    if image_crs is None:
        raise InputError(
            "permits need a georeferenced image (a GeoTIFF with a CRS) to be placed on the ground; "
            f"the image has no CRS, so {name} cannot be used"
        )
    if path.stat().st_size > MAX_PERMITS_BYTES:
        raise InputError(f"permits file {name} is over {MAX_PERMITS_BYTES // 1_000_000} MB")
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"permits file {name} is not GeoJSON (not valid JSON text: {str(exc)[:120]})") from None
    geometries = _geometries(data, name)
    src_crs = _crs_of(data, name)
    if src_crs is None:
        _require_lonlat(geometries, name)
        src_crs = WGS84
    parcels, repaired = [], []
    for index, geom in enumerate(geometries):
        poly, fixed = _polygon(geom, index, len(geometries), name)
        if fixed:
            repaired.append(index)
        if src_crs != image_crs:
            try:
                poly = shape(transform_geom(src_crs, image_crs, mapping(poly)))
            except Exception as exc:
                raise InputError(f"permits file {name}: feature {index} cannot be reprojected from {src_crs} to the image CRS: {str(exc)[:120]}") from None
            if not poly.is_valid:
                poly = _polygonal_part(make_valid(poly))
        if poly is None or poly.is_empty or not all(map(math.isfinite, poly.bounds)):
            raise InputError(f"permits file {name}: feature {index} has no usable area in the image CRS after reprojection")
        parcels.append(poly)
    if not parcels:
        raise InputError(f"permits file {name} holds no parcels (no polygon features)")
    return Permits(unary_union(parcels), len(parcels), src_crs, path, repaired, parcels, name)


def _geometries(data: object, name: str) -> list[object]:
    """The geometry member of each feature (None for a null geometry), in file order."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise InputError(f"permits file {name} is not GeoJSON (expected a JSON object with a 'type' member)")
    kind = data["type"]
    if kind == "FeatureCollection":
        feats = data.get("features")
        if not isinstance(feats, list):
            raise InputError(f"permits file {name} is not valid GeoJSON: a FeatureCollection needs a 'features' list")
        out = []
        for i, f in enumerate(feats):
            if not isinstance(f, dict) or f.get("type") != "Feature":
                raise InputError(f"permits file {name}: feature {i} is not a GeoJSON Feature object")
            out.append(f.get("geometry"))
        return out
    if kind == "Feature":
        return [data.get("geometry")]
    if kind in ("Polygon", "MultiPolygon", "Point", "MultiPoint", "LineString", "MultiLineString", "GeometryCollection"):
        return [data]
    raise InputError(f"permits file {name} is not GeoJSON (type {kind!r}; expected FeatureCollection, Feature or Polygon)")


def _crs_of(data: dict, name: str) -> CRS | None:
    member = data.get("crs")
    if member is None:
        return None
    text = None
    if isinstance(member, dict) and member.get("type") == "name" and isinstance(member.get("properties"), dict):
        text = member["properties"].get("name")
    elif isinstance(member, str):
        text = member
    if not isinstance(text, str):
        raise InputError(f"permits file {name} has a 'crs' member landsentry cannot read (expected {{\"type\": \"name\", \"properties\": {{\"name\": \"EPSG:...\"}}}})")
    if text.strip().upper() in ("URN:OGC:DEF:CRS:OGC:1.3:CRS84", "URN:OGC:DEF:CRS:OGC::CRS84", "CRS84", "OGC:CRS84"):
        return WGS84
    try:
        return CRS.from_user_input(text)
    except (CRSError, ValueError) as exc:
        raise InputError(f"permits file {name} names a CRS landsentry cannot use: {text!r} ({str(exc)[:100]})") from None


def _coords(obj: object):
    if isinstance(obj, (list, tuple)):
        if len(obj) >= 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj[:2]):
            yield obj[0], obj[1]
        else:
            for item in obj:
                yield from _coords(item)


def _require_lonlat(geometries: list[object], name: str) -> None:
    for geom in geometries:
        if not isinstance(geom, dict):
            continue
        coords = geom.get("coordinates")
        for x, y in _coords(coords if coords is not None else [g.get("coordinates") for g in geom.get("geometries", []) if isinstance(g, dict)]):
            if not (-180.0 <= x <= 180.0 and -90.0 <= y <= 90.0):
                raise InputError(
                    f"permits file {name} has no CRS information landsentry can use: it has no 'crs' member, so its "
                    f"coordinates should be WGS84 longitude/latitude (RFC 7946), but ({x:.10g}, {y:.10g}) is not; "
                    "add a crs member (e.g. {\"type\": \"name\", \"properties\": {\"name\": \"EPSG:26914\"}}) or save it in WGS84"
                )


def _polygonal_part(geom: BaseGeometry) -> BaseGeometry | None:
    """The polygons inside a (repaired) geometry, or None when it has none."""
    if geom.geom_type in POLYGONAL:
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in POLYGONAL and not g.is_empty]
    return unary_union(parts) if parts else None


def _polygon(geom: object, index: int, total: int, name: str) -> tuple[BaseGeometry, bool]:
    where = f"permits file {name}: feature {index} (of {total}, counting from 0)"
    if geom is None:
        raise InputError(f"{where} has no geometry (null)")
    if not isinstance(geom, dict) or not isinstance(geom.get("type"), str):
        raise InputError(f"{where} has a geometry that is not a GeoJSON geometry object")
    if geom["type"] not in POLYGONAL:
        raise InputError(f"{where} is a {geom['type']}, not a Polygon or MultiPolygon: parcels must be areas")
    try:
        poly = shape(geom)
        _ = poly.is_valid  # some broken coordinate arrays only fail here
    except Exception as exc:
        raise InputError(f"{where} has unreadable geometry: {str(exc)[:120] or type(exc).__name__}") from None
    if poly.is_empty:
        raise InputError(f"{where} is an empty polygon")
    if not all(map(math.isfinite, poly.bounds)):
        raise InputError(f"{where} has non-finite coordinates")
    if poly.is_valid:
        return poly, False
    fixed = _polygonal_part(make_valid(poly))
    if fixed is None or fixed.is_empty or fixed.area <= 0:
        raise InputError(f"{where} has invalid geometry that cannot be repaired into a polygon with an area")
    return fixed, True
