"""The fast GeoJSON writer (models.geojson): valid JSON, exact geometries, one-call reprojection."""
from __future__ import annotations

import json

from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import Polygon, box, mapping, shape

from landsentry.models.io.geojson import write_features

UTM = CRS.from_epsg(32616)


def _with_hole() -> Polygon:
    return Polygon([(733000, 3725000), (733100, 3725000), (733100, 3725100), (733000, 3725100)],
                   [[(733010, 3725010), (733020, 3725010), (733020, 3725020), (733010, 3725020)]])


def test_features_round_trip_with_holes_and_properties(tmp_path):
    items = [({"id": 1, "kind": "building", "reason": 'quote " and ünïcode', "area_m2": None}, _with_hole()),
             ({"id": 2, "kind": "road", "reason": "", "area_m2": 12.5}, box(733200, 3725200, 733210, 3725250))]
    path = tmp_path / "f.geojson"
    write_features(path, items, UTM, note="x")
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection" and data["note"] == "x"
    assert data["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32616"
    assert [f["id"] for f in data["features"]] == [1, 2]
    for feature, (props, geom) in zip(data["features"], items):
        assert feature["type"] == "Feature" and feature["properties"] == props
        assert shape(feature["geometry"]).equals_exact(geom, 1e-9)
    assert len(data["features"][0]["geometry"]["coordinates"]) == 2  # exterior and its hole


def test_reprojection_matches_per_geometry_transform(tmp_path):
    items = [({"id": 1}, _with_hole()), ({"id": 2}, box(733200, 3725200, 733210, 3725250))]
    path = tmp_path / "w.geojson"
    write_features(path, items, UTM, to_crs=CRS.from_epsg(4326))
    data = json.loads(path.read_text())
    assert "crs" not in data  # RFC 7946: lon/lat WGS84
    for feature, (_, geom) in zip(data["features"], items):
        expected = shape(transform_geom(UTM, CRS.from_epsg(4326), mapping(geom)))
        got = shape(feature["geometry"])
        assert got.equals_exact(expected, 1e-9)
        lon, lat = feature["geometry"]["coordinates"][0][0]
        assert -85 < lon < -84 and 33 < lat < 34  # Atlanta


def test_empty_collection(tmp_path):
    path = tmp_path / "e.geojson"
    write_features(path, [], None)
    assert json.loads(path.read_text()) == {"type": "FeatureCollection", "features": []}
