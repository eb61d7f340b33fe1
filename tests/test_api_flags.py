"""The flag register on both backends: a finished job's flags enter it (WGS84, dated), GET /v1/flags filters them
by bbox (exactly those whose geometry intersects it), kind, suspected and since; bad parameters are 422."""
from __future__ import annotations

import json
import time

import pytest
import rasterio
from fastapi.testclient import TestClient
from rasterio.transform import from_origin

from landsentry.api.app import create_app
from landsentry.api.flag_register import flag_records, image_date
from landsentry.api.settings import Settings
from landsentry.api.store import Store, now


def square(x: float, y: float, d: float = 0.001) -> dict:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]}


def flag(geometry: dict | None, kind: str = "building", suspected: bool = False) -> dict:
    from shapely.geometry import shape

    bounds = shape(geometry).bounds if geometry else (None,) * 4
    return {"kind": kind, "area_m2": 120.0, "confidence": 0.8, "suspected": int(suspected), "reason": "protected land" if suspected else "",
            "before_class": "vegetation", "geometry": json.dumps(geometry) if geometry else None,
            "minx": bounds[0], "miny": bounds[1], "maxx": bounds[2], "maxy": bounds[3], "after_date": "2024-05-01", "before_date": None}


L_SHAPE = {"type": "Polygon", "coordinates": [[[10.0, 50.0], [10.01, 50.0], [10.01, 50.001], [10.001, 50.001], [10.001, 50.01],
                                                [10.0, 50.01], [10.0, 50.0]]]}
"""An L: its bounding box covers (10.005, 50.005), its geometry does not - the exact test must leave it out."""


@pytest.fixture
def client(tmp_path, tiny_checkpoint, backend_url):
    settings = Settings.from_env(data_dir=tmp_path / "data", model=tiny_checkpoint, worker=False, database_url=backend_url)
    with TestClient(create_app(settings)) as c:
        yield c


def record(store: Store, job_id: str, flags: list[dict]) -> None:
    store.create_job(job_id, "interpret", {}, kind="single", status="running", owner="w", lease_s=30)
    assert store.finish_job(job_id, {"file_names": []}, holder="w", flags=flags)


def test_bbox_returns_exactly_the_flags_inside(client):
    store = client.app.state.store
    record(store, "j_a", [flag(square(10.002, 50.002)), flag(square(10.008, 50.008), "new_road"), flag(L_SHAPE, "earthwork", True)])
    record(store, "j_b", [flag(square(11.0, 51.0)), flag(None)])  # far away, and one without georeferencing
    answer = client.get("/v1/flags", params={"bbox": "10.0015,50.0015,10.009,50.009"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["type"] == "FeatureCollection" and body["truncated"] is False
    got = sorted((f["properties"]["job"], f["properties"]["kind"]) for f in body["features"])
    assert got == [("j_a", "building"), ("j_a", "new_road")]  # the L's box overlaps, its geometry does not
    assert body["features"][0]["geometry"] == square(10.002, 50.002)
    props = body["features"][0]["properties"]
    assert props["after_date"] == "2024-05-01" and props["area_m2"] == 120.0 and props["suspected_illegal"] is False
    inside_l = client.get("/v1/flags", params={"bbox": "10.0,50.0,10.0005,50.0005"}).json()["features"]
    assert [f["properties"]["kind"] for f in inside_l] == ["earthwork"]
    assert len(client.get("/v1/flags").json()["features"]) == 5  # no filter: all, the unplaced one too


def test_kind_suspected_since_and_limit(client):
    store = client.app.state.store
    record(store, "j_a", [flag(square(1, 1)), flag(square(2, 2), "new_building", True)])
    time.sleep(0.05)
    middle = now()
    time.sleep(0.05)
    record(store, "j_b", [flag(square(3, 3), "new_building", True), flag(square(4, 4), "road")])
    assert [f["properties"]["job"] for f in client.get("/v1/flags", params={"kind": "new_building"}).json()["features"]] == ["j_a", "j_b"]
    assert [f["properties"]["kind"] for f in client.get("/v1/flags", params={"suspected": "false"}).json()["features"]] == ["building", "road"]
    later = client.get("/v1/flags", params={"since": middle, "suspected": "true"}).json()["features"]
    assert [(f["properties"]["job"], f["properties"]["kind"]) for f in later] == [("j_b", "new_building")]
    assert len(client.get("/v1/flags", params={"since": middle.replace("Z", "+00:00")}).json()["features"]) == 2
    future = client.get("/v1/flags", params={"since": "2999-01-01T00:00:00Z"}).json()["features"]
    assert future == []
    capped = client.get("/v1/flags", params={"limit": 3}).json()
    assert len(capped["features"]) == 3 and capped["truncated"] is True


BAD = [
    ({"bbox": "1,2,3"}, "bbox: four numbers"),
    ({"bbox": "a,b,c,d"}, "bbox: four numbers"),
    ({"bbox": "3,0,1,1"}, "minlon <= maxlon"),
    ({"bbox": "0,0,1,nan"}, "bbox: four numbers"),
    ({"bbox": ""}, "bbox: four numbers"),
    ({"bbox": "0,0,1e400,1"}, "bbox: four numbers"),
    ({"since": "0.5"}, "since: Value error, an ISO 8601 date or time"),
    ({"kind": "castle"}, "kind"),
    ({"suspected": "maybe"}, "suspected"),
    ({"since": "yesterday"}, "since"),
    ({"limit": "0"}, "limit"),
]


def test_bad_parameters_are_refused_with_a_message(client):
    for params, words in BAD:  # one app for all cases (starting one per case costs seconds)
        answer = client.get("/v1/flags", params=params)
        assert answer.status_code == 422 and words in answer.json()["detail"], (params, answer.text)


def test_flags_documented_in_openapi(client):
    doc = client.get("/openapi.json").json()
    operation = doc["paths"]["/v1/flags"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"bbox", "kind", "suspected", "since", "limit"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/FlagCollection")
    assert "422" in operation["responses"]


def test_flag_records_reproject_and_date_a_finished_job(tmp_path):
    """A job's flags file (UTM) read back into register rows: WGS84 geometry and bbox, the image's own date."""
    job = tmp_path / "j_x"
    (job / "out").mkdir(parents=True)
    (job / "input").mkdir()
    with rasterio.open(job / "input" / "after.tif", "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       crs="EPSG:32616", transform=from_origin(741000, 3736000, 0.5, 0.5)) as dst:
        dst.update_tags(TIFFTAG_DATETIME="2023:07:14 10:00:00")
    features = [{"type": "Feature", "id": 1, "geometry": {"type": "Polygon", "coordinates": [[[741000, 3735990], [741010, 3735990],
                 [741010, 3736000], [741000, 3736000], [741000, 3735990]]]},
                 "properties": {"kind": "building", "suspected_illegal": True, "reason": "outside permits", "area_m2": 100.0,
                                "confidence": 0.9, "before_class": None}}]
    (job / "out" / "flags.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    rows = flag_records(job, {"grid": {"crs": "EPSG:32616"}})
    assert len(rows) == 1
    row = rows[0]
    assert row["suspected"] == 1 and row["reason"] == "outside permits" and row["after_date"] == "2023-07-14"
    assert -84.40 < row["minx"] < row["maxx"] < -84.39 and 33.73 < row["miny"] < row["maxy"] < 33.74  # Atlanta, lon/lat
    assert 0.0001 < row["maxx"] - row["minx"] < 0.00012  # 10 m of longitude there
    assert image_date(None) is None
    assert flag_records(job, {"grid": {"crs": None}})[0]["geometry"] is None  # no georeferencing: no place
