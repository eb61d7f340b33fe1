"""Flags and their rules (models/analysis/flags.py) on generated regions over a generated before-class raster."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import box, shape

from landsentry.models.vocabulary.classes import CLASS_ID
from landsentry.models.analysis.flags import CSV_COLUMNS, FlagRules, flag_items, make_flags, summary_rows, write_flag_files
from landsentry.models.io.permits import load_permits
from landsentry.models.analysis.polygons import Region

UTM = CRS.from_epsg(26914)
T = Affine(1.0, 0, 486000, 0, -1.0, 5207100)  # 1 m pixels
X0, Y1 = 486000, 5207100


def geo(col0, row0, col1, row1):
    """Pixel box -> UTM polygon."""
    return box(X0 + col0, Y1 - row1, X0 + col1, Y1 - row0)


@pytest.fixture
def before_classes(tmp_path):
    """100 x 100: vegetation on the left 50 columns, background on the right, water in the corner (generated)."""
    c = np.full((100, 100), CLASS_ID["background"], np.uint8)
    c[:, :50] = CLASS_ID["vegetation"]
    c[80:, 80:] = CLASS_ID["water"]
    path = tmp_path / "before.tif"
    with rasterio.open(path, "w", driver="GTiff", width=100, height=100, count=1, dtype="uint8", crs=UTM, transform=T, nodata=255) as ds:
        ds.write(c, 1)
    return path


def region(kind, geom, conf=0.8):
    return Region(1, geom, area_m2=geom.area, confidence=conf, properties={"kind": kind})


def regions():
    return [
        region("new_building", geo(10, 10, 30, 30)),     # on vegetation
        region("new_building", geo(60, 10, 80, 30)),     # on background
        region("new_road", geo(0, 40, 60, 45)),          # mostly on vegetation: roads are never suspect
        region("new_earthwork", geo(30, 60, 80, 70)),    # 40% vegetation
        region("new_earthwork", geo(85, 85, 95, 95)),    # on water
    ]


def test_protected_land_rule(before_classes):
    flags = make_flags(regions(), FlagRules(), before_classes=before_classes)
    got = [(f.kind, f.before_class, f.suspected_illegal) for f in flags]
    assert got == [
        ("new_building", "vegetation", True),
        ("new_building", "background", False),
        ("new_road", "vegetation", False),
        ("new_earthwork", "background", False),
        ("new_earthwork", "water", True),
    ]
    assert "vegetation or water on 100% of its area" in flags[0].reason
    assert flags[1].reason == "" and flags[2].reason == ""
    lower = make_flags(regions(), FlagRules(protected_share=0.4), before_classes=before_classes)
    assert lower[3].suspected_illegal and "40%" in lower[3].reason
    assert not lower[2].suspected_illegal, "roads are never suspected"


def test_permits_rule(before_classes, tmp_path):
    parcels = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:26914"}},
               "features": [{"type": "Feature", "properties": {}, "geometry": json.loads(json.dumps(geo(55, 5, 85, 35).__geo_interface__))}]}
    path = tmp_path / "permits.geojson"
    path.write_text(json.dumps(parcels))
    permits = load_permits(path, UTM)
    flags = make_flags(regions(), FlagRules(), permits=permits, before_classes=before_classes)
    assert not flags[1].suspected_illegal, "inside its parcel, on background: nothing to report"
    assert flags[0].suspected_illegal and "outside every permitted parcel" in flags[0].reason and "vegetation" in flags[0].reason
    assert "outside every permitted parcel" in flags[3].reason
    assert not flags[2].suspected_illegal
    # beside the parcel: the same building is suspect by the permits rule alone
    moved = [region("new_building", geo(86, 10, 99, 30))]
    (flag,) = make_flags(moved, FlagRules(), permits=permits, before_classes=before_classes)
    assert flag.suspected_illegal and flag.reason.startswith("100% of its area lies outside")
    # half outside: at the default threshold of 50% it is suspect, at 60% it is not
    half = [region("new_building", geo(70, 10, 100, 30))]
    assert make_flags(half, FlagRules(), permits=permits)[0].suspected_illegal
    assert not make_flags(half, FlagRules(outside_permits_share=0.6), permits=permits)[0].suspected_illegal


def test_single_date_flags_have_no_before_class(tmp_path):
    parcel = geo(0, 0, 50, 50)
    path = tmp_path / "p.geojson"
    path.write_text(json.dumps({"type": "Feature", "crs": {"type": "name", "properties": {"name": "EPSG:26914"}},
                                "properties": {}, "geometry": parcel.__geo_interface__}))
    permits = load_permits(path, UTM)
    one = [region("building", geo(10, 10, 20, 20)), region("building", geo(60, 60, 70, 70)),
           region("road", geo(60, 0, 100, 5)), region("earthwork", geo(60, 20, 90, 40))]
    flags = make_flags(one, FlagRules(), permits=permits)
    assert [(f.before_class, f.suspected_illegal) for f in flags] == [(None, False), (None, True), (None, False), (None, True)]


def test_feature_schema_and_wgs84(before_classes, tmp_path):
    flags = make_flags(regions(), FlagRules(), before_classes=before_classes)
    write_flag_files(tmp_path, flags, UTM, ("new_building", "new_road", "new_earthwork"), wgs84=True)
    collection = json.loads((tmp_path / "flags.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::26914"
    feats = collection["features"]
    assert [f["id"] for f in feats] == [1, 2, 3, 4, 5]
    for f, flag in zip(feats, flags):
        assert set(f["properties"]) == {"id", "kind", "suspected_illegal", "reason", "area_m2", "confidence", "before_class"}
        assert f["geometry"]["type"] == "Polygon"
        assert shape(f["geometry"]).equals(flag.geometry)
    assert feats[0]["properties"] == {"id": 1, "kind": "new_building", "suspected_illegal": True, "reason": flags[0].reason,
                                      "area_m2": 400.0, "confidence": 0.8, "before_class": "vegetation"}
    wgs = json.loads((tmp_path / "flags.wgs84.geojson").read_text())
    assert "crs" not in wgs  # RFC 7946: WGS84 lon/lat, no crs member
    lon, lat = wgs["features"][0]["geometry"]["coordinates"][0][0]
    assert -99.3 < lon < -99.1 and 46.9 < lat < 47.1
    assert wgs["features"][0]["properties"] == feats[0]["properties"]
    assert flag_items(flags)[0] == (feats[0]["properties"], flags[0].geometry)


def test_summary_csv(before_classes, tmp_path):
    flags = make_flags(regions(), FlagRules(), before_classes=before_classes)
    rows = write_flag_files(tmp_path, flags, UTM, ("new_building", "new_road", "new_earthwork"), wgs84=True)
    assert {p.name for p in tmp_path.iterdir()} >= {"flags.geojson", "flags.wgs84.geojson", "summary.csv"}
    with (tmp_path / "summary.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == CSV_COLUMNS
    assert table == [
        {"kind": "new_building", "count": "2", "area_m2": "800.0", "suspected_illegal_count": "1", "suspected_illegal_area_m2": "400.0"},
        {"kind": "new_road", "count": "1", "area_m2": "300.0", "suspected_illegal_count": "0", "suspected_illegal_area_m2": "0.0"},
        {"kind": "new_earthwork", "count": "2", "area_m2": "600.0", "suspected_illegal_count": "1", "suspected_illegal_area_m2": "100.0"},
    ]
    assert rows[0]["count"] == 2
    collection = json.loads((tmp_path / "flags.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::26914"
    assert "crs" not in json.loads((tmp_path / "flags.wgs84.geojson").read_text())


def test_unknown_areas_stay_unknown():
    """Without a ground size every area is unknown, a kind without flags too: null, not 0.0 (which is an area)."""
    r = Region(1, box(0, 0, 10, 10), area_m2=None, confidence=0.5, properties={"kind": "new_building"})
    rows = summary_rows(make_flags([r]), ("new_building", "new_road"), metric=False)
    assert rows[0]["count"] == 1 and rows[0]["area_m2"] is None
    assert rows[1] == {"kind": "new_road", "count": 0, "area_m2": None, "suspected_illegal_count": 0, "suspected_illegal_area_m2": None}
    known = summary_rows([], ("new_road",), metric=True)
    assert known == [{"kind": "new_road", "count": 0, "area_m2": 0.0, "suspected_illegal_count": 0, "suspected_illegal_area_m2": 0.0}]


def test_rules_are_checked():
    with pytest.raises(ValueError):
        FlagRules(protected_share=1.5)
    with pytest.raises(ValueError, match="unknown protected classes"):
        FlagRules(protected_classes=("forest",))
    with pytest.raises(ValueError):
        FlagRules(min_area_m2={"building": 10})
