"""`landsentry predict AFTER --before BEFORE` end to end on real pairs: NAIP 2010/2020 GeoTIFFs, LEVIR-CD and SZTAKI PNGs.

Most runs use a "sharp" copy of the tiny test checkpoint (random weights, head scaled so its
softmax is confident): two real dates then differ in places, which gives real flags to check the
plumbing on - georeferencing, schema, rasters agreeing with flags, permits - without a trained model.
Permit files, reprojected/cropped images and broken inputs are generated in tmp.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio import features
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject, transform_geom
from rasterio.windows import Window
from shapely.geometry import box, mapping, shape

from landsentry.models.analysis.flags import CSV_COLUMNS
from landsentry.models.vocabulary.kinds import BY_CODE, CHANGE_KIND_NAMES as CHANGE_KINDS, CHANGE_NODATA as NODATA

CHANGE_CODES = {code: kind.new_name for code, kind in BY_CODE.items()}

BEFORE = "naip_pair/m_4709963_se_14_1_20100629.tif"
AFTER = "naip_pair/m_4709963_se_14_1_20200831.tif"
FAST = ["--tile", "256", "--overlap", "32", "--quiet"]
PAIR_FILES = {"flags.geojson", "before_classes.tif", "after_classes.tif", "before_confidence.tif", "after_confidence.tif",
              "change.tif", "overlay.png", "summary.csv", "summary.json"}
PROPERTIES = {"id", "kind", "suspected_illegal", "reason", "area_m2", "confidence", "before_class"}
WGS84 = CRS.from_epsg(4326)


def run_pair(cli, before, after, outdir, checkpoint, *extra, expect=0):
    code, out, err = cli(["predict", after, "--before", before, "-o", outdir, "--checkpoint", checkpoint, *FAST, *extra])
    assert code == expect, err
    assert "Traceback" not in err
    return out, err


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def naip(shared_file, sharp_checkpoint, cli, tmp_path_factory):
    before, after = shared_file(BEFORE), shared_file(AFTER)
    outdir = tmp_path_factory.mktemp("naip") / "out"
    run_pair(cli, before, after, outdir, sharp_checkpoint, "--wgs84")
    return before, after, outdir


def test_pair_outputs_on_the_after_grid(naip):
    _, after, outdir = naip
    assert {p.name for p in outdir.iterdir()} == PAIR_FILES | {"flags.wgs84.geojson"}
    with rasterio.open(after) as ds:
        grid = (ds.crs, ds.transform, ds.width, ds.height)
    for name in ("before_classes.tif", "after_classes.tif", "before_confidence.tif", "after_confidence.tif", "change.tif"):
        with rasterio.open(outdir / name) as ds:
            assert (ds.crs, ds.transform, ds.width, ds.height) == grid, name
            assert ds.dtypes[0] == "uint8"
    with rasterio.open(outdir / "change.tif") as ds:
        assert ds.nodata == NODATA
        codes = ds.read(1)
    assert set(np.unique(codes).tolist()) <= {0, 1, 2, 3, NODATA}
    summary = load(outdir / "summary.json")
    assert summary["crs"] == "EPSG:26914" and summary["alignment"]["before_resampled"] is True
    assert summary["flags"] == len(load(outdir / "flags.geojson")["features"])
    # the bundled learned change model joins in by default when it is there
    bundled = (Path(__file__).resolve().parents[1] / "models" / "weights" / "landsentry-change.pt").is_file()
    assert summary["method"] == ("class comparison + learned change model" if bundled else "class comparison")
    with Image.open(outdir / "overlay.png") as overlay:
        assert overlay.size[0] > 3 * 900, "before | after | flags side by side"


def test_flag_schema_and_georeferencing(naip):
    _, after, outdir = naip
    collection = load(outdir / "flags.geojson")
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::26914"
    feats = collection["features"]
    assert len(feats) > 20, "two real dates through a random model differ in many places"
    with rasterio.open(after) as ds:
        scene = box(*ds.bounds).buffer(1e-6)
    kinds = set()
    for f in feats:
        p = f["properties"]
        assert set(p) == PROPERTIES and f["id"] == p["id"]
        assert p["kind"] in CHANGE_KINDS and isinstance(p["suspected_illegal"], bool)
        assert (p["reason"] != "") == p["suspected_illegal"]
        if p["kind"] == "new_road":
            assert not p["suspected_illegal"]
        assert 0 < p["confidence"] <= 1 and p["before_class"] in {"background", "building", "road", "bare_soil", "vegetation", "water"}
        geom = shape(f["geometry"])
        assert geom.is_valid and scene.contains(geom)
        assert p["area_m2"] == pytest.approx(geom.area, rel=0.01, abs=0.05)
        minimum = {"new_building": 20, "new_road": 50, "new_earthwork": 100}[p["kind"]]
        assert p["area_m2"] >= minimum
        kinds.add(p["kind"])
    assert kinds == set(CHANGE_KINDS)
    wgs = load(outdir / "flags.wgs84.geojson")
    assert "crs" not in wgs and len(wgs["features"]) == len(feats)
    lon, lat = shape(wgs["features"][0]["geometry"]).centroid.coords[0]
    assert -99.3 < lon < -99.1 and 46.9 < lat < 47.1


def test_change_raster_agrees_with_the_flags(naip):
    _, _, outdir = naip
    with rasterio.open(outdir / "change.tif") as ds:
        codes, transform = ds.read(1), ds.transform
    feats = load(outdir / "flags.geojson")["features"]
    code_of = {kind: code for code, kind in CHANGE_CODES.items()}
    for kind, code in code_of.items():
        geoms = [shape(f["geometry"]) for f in feats if f["properties"]["kind"] == kind]
        drawn = features.rasterize(geoms, out_shape=codes.shape, transform=transform, fill=0, default_value=1).astype(bool)
        pixels = codes == code
        iou = (drawn & pixels).sum() / max(1, (drawn | pixels).sum())
        assert iou > 0.97, f"{kind}: flags and change.tif disagree (IoU {iou:.3f}); small regions must be gone from both"
        area = sum(f["properties"]["area_m2"] for f in feats if f["properties"]["kind"] == kind)
        assert area == pytest.approx(pixels.sum() * 25.0, rel=0.001)


def test_summary_csv_counts_the_flags(naip):
    _, _, outdir = naip
    feats = load(outdir / "flags.geojson")["features"]
    with (outdir / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["kind"] for r in rows] == list(CHANGE_KINDS) and tuple(rows[0]) == CSV_COLUMNS
    for row in rows:
        mine = [f["properties"] for f in feats if f["properties"]["kind"] == row["kind"]]
        assert int(row["count"]) == len(mine)
        assert float(row["area_m2"]) == pytest.approx(sum(p["area_m2"] for p in mine), abs=0.1 * len(mine) + 0.1)
        assert int(row["suspected_illegal_count"]) == sum(p["suspected_illegal"] for p in mine)


def _permits_file(path: Path, geoms_utm, extra=()) -> Path:
    """Parcels in RFC 7946 WGS84 (no crs member), reprojected from UTM here; `extra` raw geometries appended."""
    feats = [{"type": "Feature", "properties": {"parcel": i}, "geometry": transform_geom("EPSG:26914", WGS84, mapping(g))} for i, g in enumerate(geoms_utm)]
    feats += [{"type": "Feature", "properties": {}, "geometry": g} for g in extra]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def test_permit_covering_a_flag_clears_it_and_one_beside_does_not(naip, sharp_checkpoint, cli, tmp_path):
    before, after, outdir = naip
    feats = load(outdir / "flags.geojson")["features"]
    candidates = [f for f in feats if f["properties"]["kind"] in ("new_building", "new_earthwork") and not f["properties"]["suspected_illegal"]]
    assert len(candidates) >= 2
    covered, beside = candidates[0], candidates[1]
    cg, bg = shape(covered["geometry"]), shape(beside["geometry"])
    minx, miny, maxx, maxy = bg.bounds
    next_to = box(maxx + 5, miny, maxx + 5 + (maxx - minx), maxy)  # as large as the flag, 5 m to its east
    far_bowtie = {"type": "Polygon", "coordinates": [[[-99.0, 45.0], [-98.99, 45.01], [-98.99, 45.0], [-99.0, 45.01], [-99.0, 45.0]]]}
    permits = _permits_file(tmp_path / "permits.geojson", [cg.buffer(10), next_to], extra=[far_bowtie])
    out2 = tmp_path / "with_permits"
    run_pair(cli, before, after, out2, sharp_checkpoint, "--permits", permits)
    by_geom = {shape(f["geometry"]).wkt: f["properties"] for f in load(out2 / "flags.geojson")["features"]}
    assert len(by_geom) == len(feats), "permits change the rules' verdicts, not the flags"
    assert by_geom[cg.wkt]["suspected_illegal"] is False and "outside" not in by_geom[cg.wkt]["reason"]
    b = by_geom[bg.wkt]
    assert b["suspected_illegal"] is True and "100% of its area lies outside every permitted parcel" in b["reason"]
    others = [p for w, p in by_geom.items() if w not in (cg.wkt, bg.wkt)]
    assert all(p["suspected_illegal"] == (p["kind"] != "new_road") for p in others)
    summary = load(out2 / "summary.json")
    assert summary["permits"]["parcels"] == 3 and summary["permits"]["repaired_features"] == [2], "the bowtie was repaired"


def test_single_image_with_permits(shared_file, sharp_checkpoint, cli, tmp_path):
    after = shared_file(AFTER)
    with rasterio.open(after) as ds:
        left, bottom, right, top = ds.bounds
    west_half = box(left, bottom, (left + right) / 2, top)
    permits = _permits_file(tmp_path / "p.geojson", [west_half])
    outdir = tmp_path / "one"
    code, out, err = cli(["predict", after, "-o", outdir, "--checkpoint", sharp_checkpoint, *FAST, "--permits", permits])
    assert code == 0, err
    names = {p.name for p in outdir.iterdir()}
    assert {"classes.tif", "regions.geojson", "flags.geojson", "summary.csv", "summary.json"} <= names
    feats = load(outdir / "flags.geojson")["features"]
    assert {f["properties"]["kind"] for f in feats} == {"building", "road", "earthwork"}
    for f in feats:
        p = f["properties"]
        assert set(p) == PROPERTIES and p["before_class"] is None
        east = shape(f["geometry"]).centroid.x > (left + right) / 2 + 50
        if p["kind"] == "road":
            assert not p["suspected_illegal"]
        elif east:
            assert p["suspected_illegal"] and "outside every permitted parcel" in p["reason"]
    assert any(f["properties"]["suspected_illegal"] for f in feats)
    with (outdir / "summary.csv").open() as fh:
        assert [r["kind"] for r in csv.DictReader(fh)] == ["building", "road", "earthwork"]
    assert load(outdir / "summary.json")["flags"] == len(feats)  # an int, as for two dates


def test_reprojected_cropped_before_is_analysed_on_the_overlap(shared_file, tiny_checkpoint, cli, tmp_path):
    before, after = shared_file(BEFORE), shared_file(AFTER)
    with rasterio.open(before) as src:
        win = Window(300, 200, 300, 250)
        data, t = src.read(window=win), src.window_transform(win)
        w, s, e, n = rasterio.windows.bounds(win, src.transform)
        dst_t, width, height = calculate_default_transform(src.crs, WGS84, win.width, win.height, w, s, e, n)
        out = np.zeros((4, height, width), np.uint8)
        reproject(data, out, src_transform=t, src_crs=src.crs, dst_transform=dst_t, dst_crs=WGS84,
                  resampling=Resampling.bilinear, src_nodata=0, dst_nodata=0)
    wgs_before = tmp_path / "before_wgs84.tif"
    with rasterio.open(wgs_before, "w", driver="GTiff", width=width, height=height, count=4, dtype="uint8", crs=WGS84,
                       transform=dst_t, nodata=0, photometric="MINISBLACK") as ds:
        ds.write(out)
    outdir = tmp_path / "out"
    run_pair(cli, wgs_before, after, outdir, tiny_checkpoint)
    summary = load(outdir / "summary.json")
    window = summary["alignment"]["after_window"]
    assert summary["alignment"]["before_resampled"] and summary["crs"] == "EPSG:26914"
    with rasterio.open(after) as ds:
        expected = ds.window_transform(Window(window["col_off"], window["row_off"], window["width"], window["height"]))
        after_t = ds.transform
    # the overlap is the crop: 300 x 250 pixels at (300, 200) of the before grid, give or take the 1 m offset of the dates
    assert abs(window["col_off"] - 300) <= 1 and abs(window["row_off"] - 200) <= 1
    assert abs(window["width"] - 300) <= 3 and abs(window["height"] - 250) <= 3
    with rasterio.open(outdir / "change.tif") as ds:
        assert ds.crs == CRS.from_epsg(26914) and ds.transform == expected and ds.transform.a == after_t.a
        codes = ds.read(1)
    # the corners of the overlap box the reprojected footprint does not reach are nodata, the rest is analysed
    assert (codes != NODATA).mean() > 0.9


def test_levir_png_pair_with_gsd(shared_file, sharp_checkpoint, cli, tmp_path):
    before, after = shared_file("levir_cd/test/A/test_2_0000_0000.png"), shared_file("levir_cd/test/B/test_2_0000_0000.png")
    outdir = tmp_path / "levir"
    run_pair(cli, before, after, outdir, sharp_checkpoint, "--gsd", "0.5", "--wgs84")
    assert {p.name for p in outdir.iterdir()} == PAIR_FILES, "no CRS: no WGS84 copy"
    collection = load(outdir / "flags.geojson")
    assert "crs" not in collection
    with rasterio.open(outdir / "change.tif") as ds:
        assert ds.crs is None and ds.transform.a == pytest.approx(0.5) and (ds.width, ds.height) == (256, 256)
    for f in collection["features"]:
        assert f["properties"]["area_m2"] == pytest.approx(shape(f["geometry"]).area, rel=0.01, abs=0.05)


def test_sztaki_png_pair_without_gsd_has_no_areas(shared_file, sharp_checkpoint, cli, tmp_path):
    pair = shared_file("sztaki_airchange/Szada_1/A.png").parent
    outdir = tmp_path / "sztaki"
    run_pair(cli, pair / "A.png", pair / "B.png", outdir, sharp_checkpoint)
    feats = load(outdir / "flags.geojson")["features"]
    assert feats and all(f["properties"]["area_m2"] is None for f in feats)
    assert all(shape(f["geometry"]).area >= 16 for f in feats), "16 pixels at least without a ground size"
    with rasterio.open(outdir / "change.tif") as ds:
        assert (ds.width, ds.height) == (952, 640)
    with (outdir / "summary.csv").open() as fh:
        assert all(r["area_m2"] == "" or r["count"] == "0" for r in csv.DictReader(fh))


# --- bad input: one clear line, exit status 2, nothing left behind ---------------------------------
def _shifted(src_path: Path, dst: Path, dx_px: int, bands=None) -> Path:
    with rasterio.open(src_path) as src:
        data = src.read(bands) if bands else src.read()
        t = src.transform @ Affine.translation(dx_px, 0)
        with rasterio.open(dst, "w", driver="GTiff", width=src.width, height=src.height, count=data.shape[0], dtype="uint8",
                           crs=src.crs, transform=t, nodata=0) as ds:
            ds.write(data)
    return dst


def _png(path: Path, size) -> Path:
    rng = np.random.default_rng(0)  # generated
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _bad_permits(tmp_path: Path, case: str) -> Path:
    path = tmp_path / f"{case}.geojson"
    if case == "not_geojson":
        path.write_bytes(b"PK\x03\x04 this is a zipped shapefile")
    elif case == "no_crs":
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": mapping(box(486000, 5207000, 486100, 5207100))}]}))
    elif case == "point":
        _permits_file(path, [box(486000, 5207000, 486100, 5207100)], extra=[{"type": "Point", "coordinates": [-99.2, 47.0]}])
    elif case == "garbage":
        _permits_file(path, [box(486000, 5207000, 486100, 5207100)], extra=[{"type": "Polygon", "coordinates": "nonsense"}])
    return path


BAD = {
    "no_overlap": ("do not overlap on the ground", None),
    "png_sizes": ("must have the same size", None),
    "bands": ("different band counts", None),
    "not_geojson": ("is not GeoJSON", "not_geojson"),
    "no_crs": ("has no CRS information landsentry can use", "no_crs"),
    "point": ("feature 1 (of 2, counting from 0) is a Point", "point"),
    "garbage": ("feature 1 (of 2, counting from 0) has unreadable geometry", "garbage"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_error(case, shared_file, tiny_checkpoint, cli, tmp_path):
    before, after = shared_file(BEFORE), shared_file(AFTER)
    message, permits_case = BAD[case]
    extra = []
    if case == "no_overlap":
        before = _shifted(before, tmp_path / "far.tif", 2000)
    elif case == "png_sizes":
        before, after = _png(tmp_path / "a.png", (256, 256)), _png(tmp_path / "b.png", (256, 200))
    elif case == "bands":
        before = _shifted(before, tmp_path / "rgb.tif", 0, bands=[1, 2, 3])
    if permits_case:
        extra = ["--permits", _bad_permits(tmp_path, permits_case)]
    outdir = tmp_path / "out"
    code, out, err = cli(["predict", after, "--before", before, "-o", outdir, "--checkpoint", tiny_checkpoint, *FAST, *extra])
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not outdir.exists() or not any(outdir.iterdir()), "no partial outputs"
    if permits_case:  # the single-image path refuses the same permits the same way
        code, _, err = cli(["predict", after, "-o", outdir, "--checkpoint", tiny_checkpoint, *FAST, *extra])
        assert code == 2 and message in err and "Traceback" not in err
        assert not outdir.exists() or not any(outdir.iterdir())


def test_failure_midway_leaves_nothing(shared_file, tiny_checkpoint, cli, tmp_path, monkeypatch):
    from landsentry.models.analysis import pipeline
    from landsentry.models.vocabulary.errors import InputError

    def boom(*args, **kwargs):
        raise InputError("simulated failure after the rasters were written")

    monkeypatch.setattr(pipeline, "make_flags", boom)
    before, after = shared_file("levir_cd/test/A/test_2_0000_0000.png"), shared_file("levir_cd/test/B/test_2_0000_0000.png")
    outdir = tmp_path / "out"
    code, _, err = cli(["predict", after, "--before", before, "-o", outdir, "--checkpoint", tiny_checkpoint, *FAST])
    assert code == 2 and "simulated failure" in err
    assert outdir.is_dir() and list(outdir.iterdir()) == [], "the hidden work folder is removed too"


def test_help_lists_the_pair_options(cli):
    code, out, _ = cli(["predict", "--help"])
    assert code == 0
    for option in ("--before", "--permits", "--change-checkpoint", "--no-change-model", "--min-area-building",
                   "--min-area-road", "--min-area-earthwork", "--tolerance-px", "--protected-share", "--outside-permits-share"):
        assert option in out, option
    code, out, _ = cli(["evaluate-change", "--help"])
    assert code == 0 and "--split" in out and "--change-checkpoint" in out


def test_bad_thresholds_are_refused(shared_file, tiny_checkpoint, cli, tmp_path):
    before, after = shared_file(BEFORE), shared_file(AFTER)
    for extra, message in ((["--protected-share", "1.5"], "--protected-share must be between 0 and 1"),
                           (["--min-area-road", "-3"], "minimum areas must be 0 or more"),
                           (["--tolerance-px", "-1"], "--tolerance-px must be between 0 and 64")):
        code, _, err = cli(["predict", after, "--before", before, "-o", tmp_path / "o", "--checkpoint", tiny_checkpoint, *extra])
        assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()
