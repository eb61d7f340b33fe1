"""`landsentry predict` end to end on real GeoTIFFs (NAIP 4-band uint8, SpaceNet 1-band uint16) and PNGs.

The tiny checkpoint (random weights, fixed seed) is used for speed: what is checked is geometry,
georeferencing and bookkeeping, which do not depend on the model being any good. Generated fixtures
(the large GeoTIFF, the planted class rasters, the PNG) are made here with rasterio / PIL.
"""
from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio import features
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from shapely.geometry import box, shape
from skimage import measure

from landsentry.models.analysis import regions as regions_module
from landsentry.models.analysis.flags import FlagRules
from landsentry.models.vocabulary.classes import CLASS_ID, IGNORE_INDEX
from landsentry.models.vocabulary.kinds import DEFAULT_MIN_AREA_M2
from landsentry.models.vocabulary.kinds import KINDS as KIND_TABLE

KINDS = {k.class_name: k.name for k in KIND_TABLE}  # class name -> kind name
from landsentry.models.analysis.polygons import vectorize

NAIP = "naip_pair/m_4709963_se_14_1_20100629.tif"
SPACENET = "spacenet_atlanta/sample_geotiff.tif"
FAST = ["--tile", "256", "--overlap", "32", "--quiet"]


def predict(cli, image: Path, outdir: Path, checkpoint: Path, *extra: str) -> dict[str, Path]:
    code, stdout, stderr = cli(["predict", image, "-o", outdir, "--checkpoint", checkpoint, *FAST, *extra])
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert not list(outdir.glob(".partial-*")), "the work folder must be gone after success"
    return {p.name: p for p in outdir.iterdir()}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


# NAIP keeps regions of 4+ pixels (5 m pixels: 100 m²); SpaceNet keeps the default minimum areas.
# (A random model's output is speckled: thousands of 1-pixel regions would only cost time here;
# --min-area 0 is covered by the PNG and the large-raster tests.)
MIN_AREA = {"naip": {kind: 100.0 for kind in KINDS.values()}, "spacenet": dict(DEFAULT_MIN_AREA_M2)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_file, tiny_checkpoint, cli) -> dict[str, tuple[Path, dict[str, Path]]]:
    """Each real GeoTIFF predicted once, with the WGS84 copy."""
    out = {}
    for key, rel, extra in (("naip", NAIP, ["--min-area", "100"]), ("spacenet", SPACENET, [])):
        image = shared_file(rel)
        out[key] = (image, predict(cli, image, tmp_path_factory.mktemp(key), tiny_checkpoint, "--wgs84", *extra))
    return out


def kept_pixels(classes: np.ndarray, class_id: int, min_pixels: float) -> np.ndarray:
    """Pixels of the class in 4-connected components of at least `min_pixels` pixels."""
    labels = measure.label(classes == class_id, connectivity=1)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


@pytest.mark.parametrize("key,epsg,count,dtype", [("naip", 26914, 4, "uint8"), ("spacenet", 32616, 1, "uint16")])
def test_rasters_carry_the_input_grid(runs, key, epsg, count, dtype):
    image, files = runs[key]
    assert set(files) == {"classes.tif", "confidence.tif", "regions.geojson", "regions.wgs84.geojson", "flags.geojson",
                          "flags.wgs84.geojson", "summary.csv", "overlay.png", "summary.json"}
    with rasterio.open(image) as src:
        assert (src.count, src.dtypes[0], src.crs.to_epsg()) == (count, dtype, epsg)
        grid = (src.crs, src.transform, src.width, src.height)
    with rasterio.open(files["classes.tif"]) as ds:
        assert (ds.crs, ds.transform, ds.width, ds.height) == grid
        assert ds.nodata == IGNORE_INDEX and ds.dtypes[0] == "uint8"
        classes = ds.read(1)
    with rasterio.open(files["confidence.tif"]) as ds:
        assert (ds.crs, ds.transform, ds.width, ds.height) == grid
        confidence = ds.read(1)
    values = set(np.unique(classes).tolist())
    assert values <= set(range(6)) | {IGNORE_INDEX}
    assert len(values - {IGNORE_INDEX}) >= 3, "the test model should produce several classes"
    valid = classes != IGNORE_INDEX
    assert confidence.max() <= 100 and confidence[valid].min() >= 100 // 6, "the top class has at least 1/K"
    summary = load(files["summary.json"])
    assert (summary["width"], summary["height"]) == grid[2:]
    assert sum(summary["class_shares"].values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("key", ["naip", "spacenet"])
def test_one_date_flags_mirror_the_regions_without_permits(runs, key):
    """Without permits every building/road/earthwork region is a flag of the same kind, none suspected."""
    _, files = runs[key]
    regions = load(files["regions.geojson"])["features"]
    flags = load(files["flags.geojson"])
    assert flags["crs"] == load(files["regions.geojson"])["crs"]
    assert sorted(f["properties"]["kind"] for f in flags["features"]) == sorted(r["properties"]["kind"] for r in regions)
    assert all(not f["properties"]["suspected_illegal"] and f["properties"]["before_class"] is None for f in flags["features"])
    rows = (files["summary.csv"]).read_text().splitlines()
    assert rows[0].startswith("kind,count,area_m2") and [r.split(",")[0] for r in rows[1:]] == ["building", "road", "earthwork"]


@pytest.mark.parametrize("key", ["naip", "spacenet"])
def test_regions_in_the_source_crs_with_areas(runs, key):
    image, files = runs[key]
    with rasterio.open(image) as src:
        epsg, bounds = src.crs.to_epsg(), box(*src.bounds)
    collection = load(files["regions.geojson"])
    assert collection["type"] == "FeatureCollection"
    assert collection["crs"]["properties"]["name"] == f"urn:ogc:def:crs:EPSG::{epsg}"
    feats = collection["features"]
    assert len(feats) > 10
    for feat in feats:
        geom = shape(feat["geometry"])
        props = feat["properties"]
        assert geom.geom_type == "Polygon" and geom.is_valid and not geom.is_empty
        assert bounds.buffer(1e-6).contains(geom), "polygon outside the image"
        assert props["class"] in KINDS and props["kind"] == KINDS[props["class"]]
        # UTM coordinates are metres: the reported area is the polygon's own area
        assert props["area_m2"] == pytest.approx(geom.area, rel=0.01, abs=0.051)
        assert props["area_m2"] >= MIN_AREA[key][props["kind"]] - 0.05
        assert 0 < props["confidence"] <= 1
    for kind in KINDS.values():
        areas = [f["properties"]["area_m2"] for f in feats if f["properties"]["kind"] == kind]
        assert areas == sorted(areas, reverse=True), "largest regions first within a kind"


@pytest.mark.parametrize("key", ["naip", "spacenet"])
def test_min_area_keeps_exactly_the_larger_regions(runs, key):
    _, files = runs[key]
    everything = load(files["regions.geojson"])["features"]
    kept = 0
    for name in KINDS:
        regions = vectorize(files["classes.tif"], [CLASS_ID[name]], min_area_m2=200.0)
        expected = sorted(f["properties"]["area_m2"] for f in everything if f["properties"]["class"] == name and f["properties"]["area_m2"] >= 200)
        assert sorted(round(r.area_m2, 1) for r in regions) == expected, name
        kept += len(regions)
    assert 0 < kept < len(everything)


def test_default_minimum_areas(tmp_path):
    """Just below / just above each kind's default minimum area (0.5 m pixels: 0.25 m² each)."""
    classes = np.zeros((200, 600), np.uint8)
    sizes = {}
    for row, (name, kind) in enumerate(KINDS.items()):
        need = int(DEFAULT_MIN_AREA_M2[kind] / 0.25)  # pixels at exactly the minimum
        for col, n in ((10, need - 1), (300, need)):
            h = 2
            w = -(-n // h)
            block = np.zeros(h * w, bool)
            block[:n] = True
            classes[20 + 60 * row : 20 + 60 * row + h, col : col + w][block.reshape(h, w)] = CLASS_ID[name]
        sizes[kind] = need * 0.25
    path = _class_raster(tmp_path / "c.tif", classes, *GRIDS["utm"][:2])
    conf = _class_raster(tmp_path / "conf.tif", np.full_like(classes, 80), *GRIDS["utm"][:2])
    regions = regions_module.find_regions(path, conf, {k.class_id: k.name for k in KIND_TABLE}, FlagRules(), metric=True)
    found = {r.properties["kind"]: r for r in regions}
    assert len(regions) == 3 and set(found) == set(KINDS.values()), [(r.properties, r.area_m2) for r in regions]
    for kind, region in found.items():
        assert region.area_m2 == pytest.approx(sizes[kind])
        assert region.confidence == pytest.approx(0.8)


@pytest.mark.parametrize("key,lon,lat", [("naip", -99.2, 47.0), ("spacenet", -84.5, 33.7)])
def test_wgs84_copy(runs, key, lon, lat):
    image, files = runs[key]
    with rasterio.open(image) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    assert west == pytest.approx(lon, abs=0.5) and south == pytest.approx(lat, abs=0.5), "sanity of the expected place"
    native = load(files["regions.geojson"])["features"]
    wgs = load(files["regions.wgs84.geojson"])
    assert "crs" not in wgs, "RFC 7946: WGS84 lon/lat needs no crs member"
    assert len(wgs["features"]) == len(native)
    tol = 1e-6
    for a, b in zip(native, wgs["features"]):
        assert a["properties"] == b["properties"]
        coords = np.asarray(shape(b["geometry"]).exterior.coords)
        assert (coords[:, 0] >= west - tol).all() and (coords[:, 0] <= east + tol).all(), "x must be longitude"
        assert (coords[:, 1] >= south - tol).all() and (coords[:, 1] <= north + tol).all(), "y must be latitude"


@pytest.mark.parametrize("key", ["naip", "spacenet"])
def test_polygons_land_on_their_pixels(runs, key):
    """Rasterised back onto the grid, the polygons cover the class pixels of the regions kept: no more, no less."""
    _, files = runs[key]
    with rasterio.open(files["classes.tif"]) as ds:
        classes, transform = ds.read(1), ds.transform
    pixel_area = abs(transform.a * transform.e)
    feats = load(files["regions.geojson"])["features"]
    checked = 0
    for name, kind in KINDS.items():
        expected = kept_pixels(classes, CLASS_ID[name], MIN_AREA[key][kind] / pixel_area - 1e-6)
        geoms = [shape(f["geometry"]) for f in feats if f["properties"]["class"] == name]
        assert len(geoms) == measure.label(expected, connectivity=1).max(), f"{name}: one polygon per kept region"
        if expected.sum() < 400:
            continue
        drawn = features.rasterize(geoms, out_shape=classes.shape, transform=transform, fill=0, default_value=1).astype(bool)
        iou = (drawn & expected).sum() / (drawn | expected).sum()
        assert iou > 0.95, f"{name}: polygons cover other pixels than the class raster (IoU {iou:.3f})"
        checked += 1
    assert checked >= 2


def _png(path: Path, size=(200, 300)) -> Path:
    rng = np.random.default_rng(3)  # generated: smooth random blobs, so the model finds regions
    small = rng.integers(0, 256, (size[0] // 20, size[1] // 20, 3), dtype=np.uint8)
    Image.fromarray(small).resize((size[1], size[0]), Image.BILINEAR).save(path)
    return path


def test_png_with_gsd_has_areas_from_pixel_counts(tmp_path, tiny_checkpoint, cli):
    image = _png(tmp_path / "scene.png")
    files = predict(cli, image, tmp_path / "out", tiny_checkpoint, "--gsd", "0.3", "--min-area", "0")
    with rasterio.open(files["classes.tif"]) as ds:
        classes = ds.read(1)
        assert ds.crs is None and ds.transform.a == pytest.approx(0.3) and ds.transform.e == pytest.approx(-0.3)
    collection = load(files["regions.geojson"])
    assert "crs" not in collection and "regions.wgs84.geojson" not in files
    feats = collection["features"]
    assert feats
    for name in KINDS:
        areas = [f["properties"]["area_m2"] for f in feats if f["properties"]["class"] == name]
        count = int((classes == CLASS_ID[name]).sum())
        # every pixel is in one region; area_m2 is rounded to 0.1 m² per region
        assert sum(areas) == pytest.approx(count * 0.09, abs=0.05 * len(areas) + 1e-6), name
    assert load(files["summary.json"])["pixel_area_m2"] == pytest.approx(0.09)
    # --min-area through the CLI: exactly the regions of at least that many m² remain
    # (5.1 m²: no multiple of 0.09 m² lies within the 0.05 rounding of area_m2 around it)
    filtered = load(predict(cli, image, tmp_path / "out5", tiny_checkpoint, "--gsd", "0.3", "--min-area", "5.1")["regions.geojson"])["features"]
    expected = sorted(f["properties"]["area_m2"] for f in feats if f["properties"]["area_m2"] >= 5.1)
    assert sorted(f["properties"]["area_m2"] for f in filtered) == expected
    assert 0 < len(filtered) < len(feats)


def test_png_without_gsd_has_no_areas(tmp_path, tiny_checkpoint, cli):
    files = predict(cli, _png(tmp_path / "scene.png"), tmp_path / "out", tiny_checkpoint)
    feats = load(files["regions.geojson"])["features"]
    assert feats
    assert all(f["properties"]["area_m2"] is None for f in feats), "no ground size known: area is unknown, not pixels"
    assert all(shape(f["geometry"]).area >= FlagRules().min_area_px for f in feats)
    with rasterio.open(files["classes.tif"]) as ds:
        classes = ds.read(1)
    # pixel coordinates: the polygons lie on the image grid
    assert box(0, 0, classes.shape[1], classes.shape[0]).buffer(1e-6).contains(shape(feats[0]["geometry"]))


@pytest.fixture(scope="module")
def large_run(tmp_path_factory, tiny_checkpoint, cli, monkeypatch_module):
    """A generated 1500 x 1300 GeoTIFF: 6 x 7 windows of 256 in several strips, vectorised in 300-px blocks."""
    root = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(42)
    small = rng.integers(0, 256, (3, 1300 // 50, 1500 // 50), dtype=np.uint8)
    data = np.stack([np.asarray(Image.fromarray(b).resize((1500, 1300), Image.BILINEAR)) for b in small])
    image = root / "large.tif"
    with rasterio.open(image, "w", driver="GTiff", width=1500, height=1300, count=3, dtype="uint8",
                       crs=CRS.from_epsg(32616), transform=Affine(0.5, 0, 733000, 0, -0.5, 3725000)) as ds:
        ds.write(data)
    monkeypatch_module.setattr(regions_module, "vectorize", functools.partial(vectorize, block=300))
    files = predict(cli, image, root / "out", tiny_checkpoint, "--min-area", "0")
    return image, files


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_large_geotiff_in_strips_and_blocks(large_run):
    image, files = large_run
    with rasterio.open(files["classes.tif"]) as ds:
        classes = ds.read(1)
        assert (ds.width, ds.height) == (1500, 1300)
    assert (classes != IGNORE_INDEX).all(), "every row of every strip was written"
    feats = load(files["regions.geojson"])["features"]
    # blocks of 300 px give the same regions as one block: nothing split or lost at block edges
    for name in KINDS:
        blocked = sorted(round(f["properties"]["area_m2"], 1) for f in feats if f["properties"]["class"] == name)
        whole = vectorize(files["classes.tif"], [CLASS_ID[name]], 0.0, block=4096)
        assert blocked == sorted(round(r.area_m2, 1) for r in whole), name
        assert sum(r.area_m2 for r in whole) == pytest.approx((classes == CLASS_ID[name]).sum() * 0.25), name


def _class_raster(path: Path, classes: np.ndarray, transform: Affine, crs: CRS | None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=classes.shape[1], height=classes.shape[0], count=1,
                           dtype="uint8", crs=crs, transform=transform, nodata=255) as ds:
            ds.write(classes, 1)
    return path


GRIDS = {
    "utm": (Affine(0.5, 0, 733000, 0, -0.5, 3725000), CRS.from_epsg(32616), 0.25),
    "png-gsd": (Affine(0.3, 0, 0, 0, -0.3, 0), None, 0.09),
    "png-pixels": (Affine.identity(), None, 1.0),  # y grows downwards
}


@pytest.mark.parametrize("grid", list(GRIDS))
def test_regions_crossing_blocks_come_out_whole(tmp_path, grid):
    transform, crs, pixel_area = GRIDS[grid]
    classes = np.zeros((1300, 1500), np.uint8)
    classes[250:700, 310:590] = CLASS_ID["building"]      # crosses row blocks only (one column block)
    classes[820:1250, 100:1400] = CLASS_ID["building"]    # crosses rows and columns
    classes[900:1200, 400:1000] = CLASS_ID["road"]        # a hole in the big one, itself crossing blocks
    classes[50:60, 50:60] = CLASS_ID["building"]          # inside one block
    path = _class_raster(tmp_path / f"{grid}.tif", classes, transform, crs)
    metric = grid != "png-pixels"
    for block in (300, 4096):
        buildings = vectorize(path, [CLASS_ID["building"]], 0.0, metric_pixels=metric, block=block)
        assert len(buildings) == 3, f"block {block}: {len(buildings)} building polygons"
        px = sorted(round(r.geometry.area / pixel_area) for r in buildings)
        assert px == sorted([450 * 280, 430 * 1300 - 300 * 600, 100])
        big = max(buildings, key=lambda r: r.geometry.area)
        assert len(big.geometry.interiors) == 1
        if metric:
            assert big.area_m2 == pytest.approx((430 * 1300 - 300 * 600) * pixel_area)
        else:
            assert big.area_m2 is None
        roads = vectorize(path, [CLASS_ID["road"]], 0.0, metric_pixels=metric, block=block)
        assert len(roads) == 1 and round(roads[0].geometry.area / pixel_area) == 300 * 600


def test_min_area_filter_and_simplification_keep_areas(tmp_path):
    classes = np.zeros((400, 400), np.uint8)
    classes[10:14, 10:15] = CLASS_ID["building"]  # 20 px = 5 m² at 0.5 m: below the minimum
    classes[100:300, 100:300] = CLASS_ID["building"]
    for r in range(20):  # a thin staircase (80 px): a 1-pixel simplification would cut it down a lot
        classes[320 + r, 20 + 3 * r : 24 + 3 * r] = CLASS_ID["building"]
    classes[360:361, 20:29] = CLASS_ID["building"]  # a 1-pixel line, 9 px = 2.25 m²: below the minimum
    path = _class_raster(tmp_path / "c.tif", classes, GRIDS["utm"][0], GRIDS["utm"][1])
    regions = vectorize(path, [CLASS_ID["building"]], 6.0)
    assert sorted(round(r.area_m2, 2) for r in regions) == [20.0, 10000.0]
    for r in regions:
        assert r.geometry.area == pytest.approx(r.area_m2, rel=0.01)
        drawn = features.rasterize([r.geometry], out_shape=classes.shape, transform=GRIDS["utm"][0]).astype(bool)
        assert drawn.sum() == pytest.approx(r.area_m2 / 0.25, rel=0.02)
