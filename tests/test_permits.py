"""Permit parcels (models/io/permits.py): CRS handling, reprojection, repair and clear refusals.

Every GeoJSON file here is generated in tmp; coordinates are around the real NAIP scene
(EPSG:26914, near 99.2 W 47.0 N).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

from landsentry.models.vocabulary.errors import InputError
from landsentry.models.analysis.inputs import open_inputs
from landsentry.models.io.permits import load_permits
from tests.conftest import ROOT

UTM = CRS.from_epsg(26914)
PARCEL = box(486000, 5207000, 486200, 5207100)  # 200 m x 100 m in UTM 14N


def _wgs84(geom) -> dict:
    return transform_geom(UTM, CRS.from_epsg(4326), mapping(geom))


def _write(path, data) -> str:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _fc(*geoms, crs=None) -> dict:
    out = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"n": i}, "geometry": g} for i, g in enumerate(geoms)]}
    if crs:
        out["crs"] = {"type": "name", "properties": {"name": crs}}
    return out


def test_rfc7946_lonlat_is_reprojected_to_the_image_crs(tmp_path):
    permits = load_permits(_write(tmp_path / "p.geojson", _fc(_wgs84(PARCEL))), UTM)
    assert permits.count == 1 and permits.source_crs == CRS.from_epsg(4326)
    assert permits.area.symmetric_difference(PARCEL).area < 0.01 * PARCEL.area
    assert permits.outside_share(PARCEL.buffer(-10)) == 0.0
    assert permits.outside_share(box(486200, 5207000, 486400, 5207100)) == pytest.approx(1.0, abs=0.01)
    half = box(486100, 5207000, 486300, 5207100)
    assert permits.outside_share(half) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("name", ["urn:ogc:def:crs:EPSG::26914", "EPSG:26914"])
def test_legacy_crs_member(tmp_path, name):
    permits = load_permits(_write(tmp_path / "p.geojson", _fc(mapping(PARCEL), crs=name)), UTM)
    assert permits.source_crs == UTM and permits.area.equals(PARCEL)


def test_single_feature_and_bare_geometry(tmp_path):
    feature = {"type": "Feature", "properties": {}, "geometry": _wgs84(PARCEL)}
    assert load_permits(_write(tmp_path / "f.geojson", feature), UTM).count == 1
    assert load_permits(_write(tmp_path / "g.geojson", _wgs84(PARCEL)), UTM).count == 1


def test_projected_coordinates_without_crs_are_refused(tmp_path):
    path = _write(tmp_path / "utm_no_crs.geojson", _fc(mapping(PARCEL)))
    with pytest.raises(InputError, match="permits file utm_no_crs.geojson has no CRS information landsentry can use") as err:
        load_permits(path, UTM)
    assert "5207000) is not" in str(err.value) and "crs member" in str(err.value)


def test_not_geojson(tmp_path):
    with pytest.raises(InputError, match="is not GeoJSON \\(not valid JSON"):
        load_permits(_write(tmp_path / "parcels.shp", "\x00\x00\x27\x0a garbage"), UTM)
    with pytest.raises(InputError, match="is not GeoJSON"):
        load_permits(_write(tmp_path / "list.json", [1, 2, 3]), UTM)
    with pytest.raises(InputError, match="is not GeoJSON \\(type 'Topology'"):
        load_permits(_write(tmp_path / "topo.json", {"type": "Topology", "objects": {}}), UTM)
    with pytest.raises(InputError, match="not found"):
        load_permits(tmp_path / "missing.geojson", UTM)


def test_unusable_crs_member(tmp_path):
    with pytest.raises(InputError, match="names a CRS landsentry cannot use"):
        load_permits(_write(tmp_path / "p.geojson", _fc(mapping(PARCEL), crs="EPSG:999999")), UTM)


def test_bowtie_is_repaired(tmp_path):
    x0, y0 = 487000, 5207000  # beside the parcel
    bowtie = {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + 100, y0 + 100], [x0 + 100, y0], [x0, y0 + 100], [x0, y0]]]}
    assert not shape(bowtie).is_valid
    permits = load_permits(_write(tmp_path / "p.geojson", _fc(mapping(PARCEL.buffer(-20)), bowtie, crs="EPSG:26914")), UTM)
    assert permits.repaired == [1] and permits.area.is_valid
    # the repaired bowtie is two triangles of 2500 m² each
    assert permits.area.difference(PARCEL.buffer(-20)).area == pytest.approx(5000, rel=0.01)


@pytest.mark.parametrize("geometry,message", [
    ({"type": "Point", "coordinates": [-99.2, 47.0]}, "feature 1 \\(of 2, counting from 0\\) is a Point, not a Polygon"),
    ({"type": "Polygon", "coordinates": [[[-99.2, 47.0], "x"]]}, "feature 1 \\(of 2, counting from 0\\) has unreadable geometry"),
    ({"type": "Polygon", "coordinates": [[[-99.2, 47.0], [-99.2, 47.0], [-99.2, 47.0], [-99.2, 47.0]]]}, "feature 1 .* cannot be repaired"),
    (None, "feature 1 \\(of 2, counting from 0\\) has no geometry"),
])
def test_bad_features_are_named(tmp_path, geometry, message):
    with pytest.raises(InputError, match=message):
        load_permits(_write(tmp_path / "p.geojson", _fc(_wgs84(PARCEL), geometry)), UTM)


def test_image_without_crs_cannot_use_permits(tmp_path):
    with pytest.raises(InputError, match="need a georeferenced image"):
        load_permits(_write(tmp_path / "p.geojson", _fc(_wgs84(PARCEL))), None)


# --- parcels that miss the image (a wrong CRS, another area): refused, never "everything is outside" ------

DEMO = ROOT / "sample_tiles"


def _demo_permits(tmp_path, shift_deg: float = 0.0, crs: str | None = None, keep_first: bool = False) -> Path:
    data = json.loads((DEMO / "demo_permits.geojson").read_text())
    for i, feature in enumerate(data["features"]):
        if keep_first and i == 0:
            continue
        feature["geometry"]["coordinates"] = [[[x + shift_deg, y] for x, y in ring] for ring in feature["geometry"]["coordinates"]]
    if crs:
        data["crs"] = {"type": "name", "properties": {"name": crs}}
    return _write(tmp_path / "permits.geojson", data)


@pytest.mark.parametrize("shift, crs", [(0.5, None), (0.0, "EPSG:32616")], ids=["another-area", "lonlat-labelled-utm"])
def test_permits_that_miss_the_image_are_refused(tmp_path, shift, crs, cli, tiny_checkpoint):
    permits = _demo_permits(tmp_path, shift, crs)
    with pytest.raises(InputError, match=r"permits file permits.geojson: none of its 2 parcel\(s\) touches demo_after.tif"):
        open_inputs(DEMO / "demo_after.tif", permits=permits)
    with pytest.raises(InputError, match=r"touches the after image \(demo_after.tif\)"):
        open_inputs(DEMO / "demo_after.tif", DEMO / "demo_before.tif", permits)
    code, _, err = cli(["predict", DEMO / "demo_after.tif", "-o", tmp_path / "out", "--permits", permits, "--checkpoint", tiny_checkpoint])
    assert code == 2 and "is the file's CRS" in err and not (tmp_path / "out").exists()


def test_permits_partly_on_the_image_are_counted(tmp_path):
    permits = _demo_permits(tmp_path, 0.5, keep_first=True)
    with open_inputs(DEMO / "demo_after.tif", permits=permits) as inputs:
        assert inputs.permits.describe()["parcels_on_image"] == 1 and inputs.permits.count == 2
