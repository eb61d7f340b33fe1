"""Vector labels in: labelled polygons (GeoJSON, GeoPackage) reprojected and rasterised onto a real GeoTIFF's grid.

The image is the real SpaceNet Atlanta tile (../shared/data/spacenet_atlanta, 900x900, 0.5 m, EPSG:32616).
Polygons are drawn here in pixel terms, so the labelled pixels are known exactly: an axis-aligned rectangle
inset a quarter pixel from pixel edges covers exactly that block of pixels, and a triangle's pixels are the
pixel centres inside it (shapely, independent of GDAL's rasteriser). The same polygons are sent in WGS84
(reprojected by the server) and in the image CRS as a GeoPackage, through the API and `landsentry samples add`.
"""
from __future__ import annotations

import json

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from fastapi.testclient import TestClient
from PIL import Image
from rasterio.warp import transform_geom
import shapely.affinity
from shapely.geometry import Polygon, mapping, shape

from landsentry.api.app import create_app
from landsentry.api.settings import Settings
from landsentry.models.vocabulary.classes import CLASS_ID, IGNORE_INDEX

ATLANTA = "spacenet_atlanta/sample_geotiff.tif"
BUILDINGS = "spacenet_atlanta/buildings.geojson"
BUILDING, ROAD, WATER = CLASS_ID["building"], CLASS_ID["road"], CLASS_ID["water"]


@pytest.fixture(scope="module")
def tile(request):
    from tests.conftest import require_shared

    path = require_shared(ATLANTA)
    with rasterio.open(path) as ds:
        return path, ds.transform, ds.crs, (ds.height, ds.width)


def px(transform, col: float, row: float) -> tuple[float, float]:
    """Image CRS coordinates of a point given in pixel units (col, row from the top-left corner)."""
    return tuple(transform @ (col, row))


def centre_mask(transform, shape_hw, geom) -> np.ndarray:
    """Pixels whose centre lies inside `geom` (image CRS), computed with shapely alone."""
    rows, cols = np.mgrid[0:shape_hw[0], 0:shape_hw[1]]
    xs, ys = transform @ (cols + 0.5, rows + 0.5)
    return shapely.contains_xy(geom, xs, ys)


@pytest.fixture(scope="module")
def labels(tile):
    """(features in the image CRS as (properties, polygon), the mask they must give)."""
    _, t, _, hw = tile
    rect = Polygon([px(t, 10.25, 20.25), px(t, 29.75, 20.25), px(t, 29.75, 44.75), px(t, 10.25, 44.75)])
    overlap = Polygon([px(t, 25.25, 40.25), px(t, 60.75, 40.25), px(t, 60.75, 50.75), px(t, 25.25, 50.75)])
    triangle = Polygon([px(t, 100.3, 100.1), px(t, 180.6, 130.7), px(t, 120.2, 190.9)])
    block = Polygon([px(t, 300.25, 300.25), px(t, 340.75, 300.25), px(t, 340.75, 330.75), px(t, 300.25, 330.75)])
    unknown = Polygon([px(t, 500.25, 500.25), px(t, 510.75, 500.25), px(t, 510.75, 505.75), px(t, 500.25, 505.75)])
    feats = [({"landuse": "house"}, rect), ({"landuse": "street"}, overlap), ({"landuse": "pond"}, triangle),
             ({"landuse": "house"}, block), ({"landuse": "unsure"}, unknown)]
    expected = np.full(hw, IGNORE_INDEX, np.uint8)
    expected[20:45, 10:30] = BUILDING
    expected[40:51, 25:61] = ROAD  # later features win where they overlap
    expected[centre_mask(t, hw, triangle)] = WATER
    expected[300:331, 300:341] = BUILDING
    # no pixel centre lies within 1e-3 px of the triangle's edges: reprojection rounding cannot flip one
    rows, cols = np.mgrid[0:hw[0], 0:hw[1]]
    xs, ys = t @ (cols + 0.5, rows + 0.5)
    assert shapely.distance(triangle.exterior, shapely.points(xs, ys)).min() > 1e-3 * t.a
    return feats, expected


MAPPING = {"house": "building", "street": "road", "pond": "water", "unsure": "unknown"}


def write_geojson(path, feats, crs, to_crs=None):
    """A FeatureCollection; with `to_crs` the polygons are reprojected (WGS84 without a crs member, per RFC 7946)."""
    out = []
    for props, geom in feats:
        g = mapping(geom) if to_crs is None else transform_geom(crs, to_crs, mapping(geom))
        out.append({"type": "Feature", "properties": props, "geometry": g})
    doc = {"type": "FeatureCollection", "features": out}
    if to_crs is None:
        doc["crs"] = {"type": "name", "properties": {"name": str(crs)}}
    path.write_text(json.dumps(doc))
    return path


def write_gpkg(path, feats, crs, layer="parcels"):
    geometry = np.array([shapely.to_wkb(g) for _, g in feats], dtype=object)
    values = np.array([p["landuse"] for p, _ in feats], dtype=object)
    pyogrio.raw.write(path, geometry, [values], ["landuse"], layer=layer, driver="GPKG", crs=str(crs), geometry_type="Polygon")
    return path


@pytest.fixture(scope="module")
def settings(tmp_path_factory, tiny_checkpoint) -> Settings:
    return Settings.from_env(data_dir=tmp_path_factory.mktemp("vectors"), model=tiny_checkpoint, worker=False)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def post(client, image, vectors, **fields):
    files = {"image": (image.name, image.read_bytes()), "vectors": (vectors.name, vectors.read_bytes())}
    return client.post("/v1/samples", files=files, data={k: v for k, v in fields.items() if v is not None})


def stored_mask(settings, sample_id: str) -> np.ndarray:
    return np.asarray(Image.open(settings.data_dir / "samples" / "masks" / f"{sample_id}.png"))


def test_wgs84_geojson_is_reprojected_and_rasterised_exactly(client, settings, tile, labels, tmp_path):
    image, _, crs, _ = tile
    feats, expected = labels
    vectors = write_geojson(tmp_path / "parcels.geojson", feats, crs, to_crs="EPSG:4326")
    r = post(client, image, vectors, class_field="landuse", class_map=json.dumps(MAPPING))
    assert r.status_code == 201, r.text
    sample = r.json()
    assert sample["source"] == "vectors:parcels.geojson" and (sample["width"], sample["height"]) == (900, 900)
    mask = stored_mask(settings, sample["id"])
    assert np.array_equal(mask, expected)
    assert sample["class_pixels"]["building"] == 20 * 25 - 5 * 5 + 41 * 31
    assert sample["class_pixels"]["ignore"] == int((expected == IGNORE_INDEX).sum())
    # the stored image is the GeoTIFF itself, byte for byte
    assert (settings.data_dir / "samples" / "images" / f"{sample['id']}.tif").read_bytes() == image.read_bytes()


def test_geopackage_in_the_image_crs_with_its_layer(client, settings, tile, labels, tmp_path):
    image, _, crs, _ = tile
    feats, expected = labels
    vectors = write_gpkg(tmp_path / "survey.gpkg", feats, crs)
    r = post(client, image, vectors, class_field="landuse", class_map=json.dumps(MAPPING), layer="parcels")
    assert r.status_code == 201, r.text
    assert np.array_equal(stored_mask(settings, r.json()["id"]), expected)


def test_real_building_footprints_label_their_pixel_centres(client, settings, tile, shared_file):
    """The 43 SpaceNet footprints: building exactly where a pixel centre is inside one, unknown elsewhere."""
    image, t, _, hw = tile
    footprints = shared_file(BUILDINGS)
    r = post(client, image, footprints, class_field="building", class_map=json.dumps({"yes": "building"}))
    assert r.status_code == 201, r.text
    union = shapely.union_all([shape(f["geometry"]) for f in json.loads(footprints.read_text())["features"]])
    expected = np.where(centre_mask(t, hw, union), BUILDING, IGNORE_INDEX)
    assert np.array_equal(stored_mask(settings, r.json()["id"]), expected)
    assert r.json()["class_pixels"]["building"] == int(centre_mask(t, hw, union).sum()) > 30_000


def test_cli_adds_the_same_sample_to_a_data_dir(cli, tile, labels, tmp_path, tiny_checkpoint, monkeypatch):
    image, _, crs, _ = tile
    feats, expected = labels
    vectors = write_gpkg(tmp_path / "survey.gpkg", feats, crs)
    data = tmp_path / "data"
    monkeypatch.setenv("LANDSENTRY_MODEL", str(tiny_checkpoint))
    base = ["samples", "add", image, "--vectors", vectors, "--class-field", "landuse", "--data-dir", data, "--json"]
    code, out, err = cli(base + [f"--map={value}={name}" for value, name in MAPPING.items()])
    assert code == 0, err
    sample = json.loads(out)
    assert sample["source"] == "vectors:survey.gpkg"
    assert np.array_equal(np.asarray(Image.open(data / "samples" / "masks" / f"{sample['id']}.png")), expected)
    # a value the mapping does not name: one line, exit 2, nothing more stored
    code, out, err = cli(base + ["--map", "house=building"])
    assert code == 2 and "feature 1 (fid 2, landuse='street')" in err and "does not name 'street'" in err
    assert out == "" and len(err.strip().splitlines()) == 1
    assert len(list((data / "samples" / "masks").iterdir())) == 1


def test_cli_mask_png_and_usage_errors(cli, tmp_path, tiny_checkpoint, monkeypatch):
    from tests.conftest import ROOT

    image = ROOT / "sample_tiles" / "spacenet_atlanta_pan.tif"
    with rasterio.open(image) as ds:
        h, w = ds.height, ds.width
    mask = np.full((h, w), IGNORE_INDEX, np.uint8)
    mask[5:9, 7:20] = ROAD
    Image.fromarray(mask).save(tmp_path / "m.png")
    monkeypatch.setenv("LANDSENTRY_MODEL", str(tiny_checkpoint))
    code, out, err = cli(["samples", "add", image, "--mask", tmp_path / "m.png", "--data-dir", tmp_path / "d"])
    assert code == 0, err
    assert out.startswith("sample s_") and f"road {4 * 13}" in out
    code, _, err = cli(["samples", "add", image, "--vectors", tmp_path / "m.png", "--data-dir", tmp_path / "d"])
    assert code == 2 and "--class-field" in err
    code, _, err = cli(["samples", "add", image, "--mask", tmp_path / "nope.png"])
    assert code == 2 and "not found" in err


def bowtie(t):
    return Polygon([px(t, 10, 10), px(t, 50, 50), px(t, 50, 10), px(t, 10, 50)])


@pytest.mark.parametrize("case, words", [
    ("self_intersection", ["feature 1 (fid 1, landuse='house')", "Self-intersection"]),
    ("unmapped_value", ["feature 0", "does not name 'barn'"]),
    ("elsewhere", ["none of the 2 polygon(s)", "the image x 733601..734051"]),
    ("no_field", ["no property 'kind'", "landuse"]),
    ("bad_class_name", ["'lake'", "not a class"]),
    ("bad_json", ["class_map is not JSON"]),
    ("point", ["feature 1", "is a Point"]),
    ("only_unknown", ["labels no pixel"]),
    ("png_image", ["georeferenced image"]),
    ("no_class_field", ["class_field"]),
    ("not_vectors", ["not GeoJSON or GeoPackage"]),
    ("empty", ["holds no features"]),
    ("null_geometry", ["feature 1", "has no geometry"]),
])
def test_bad_vectors_are_refused_naming_the_feature(client, settings, tile, tmp_path, case, words):
    from tests.conftest import ROOT

    image, t, crs, _ = tile
    good = Polygon([px(t, 1, 1), px(t, 5, 1), px(t, 5, 5)])
    feats = [({"landuse": "house"}, good), ({"landuse": "house"}, good)]
    fields = {"class_field": "landuse", "class_map": json.dumps({"house": "building", "barn": "building"})}
    if case == "self_intersection":
        feats[1] = ({"landuse": "house"}, bowtie(t))
    elif case == "unmapped_value":
        feats[0] = ({"landuse": "barn"}, good)
        fields["class_map"] = json.dumps({"house": "building"})
    elif case == "elsewhere":
        feats = [(p, shapely.affinity.translate(g, 10_000, 0)) for p, g in feats]
    elif case == "no_field":
        fields["class_field"] = "kind"
    elif case == "bad_class_name":
        fields["class_map"] = json.dumps({"house": "lake"})
    elif case == "bad_json":
        fields["class_map"] = "{house: building"
    elif case == "only_unknown":
        fields["class_map"] = json.dumps({"house": "unknown"})
    elif case == "png_image":
        image = tmp_path / "plain.png"
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    elif case == "no_class_field":
        del fields["class_field"]
    vectors = write_geojson(tmp_path / "v.geojson", feats, crs)
    if case == "point":
        doc = json.loads(vectors.read_text())
        doc["features"][1]["geometry"] = {"type": "Point", "coordinates": list(px(t, 3, 3))}
        vectors.write_text(json.dumps(doc))
    if case == "not_vectors":
        vectors.write_text("this is not a vector file")
    if case in ("empty", "null_geometry"):
        doc = json.loads(vectors.read_text())
        if case == "empty":
            doc["features"] = []
        else:
            doc["features"][1]["geometry"] = None
        vectors.write_text(json.dumps(doc))
    samples = client.get("/v1/samples").json()["samples"]
    masks = set((settings.data_dir / "samples" / "masks").iterdir())
    r = post(client, image, vectors, **fields)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert all(w in detail for w in words), detail
    assert client.get("/v1/samples").json()["samples"] == samples  # nothing stored
    assert set((settings.data_dir / "samples" / "masks").iterdir()) == masks


def test_mask_and_vectors_together_or_neither_are_refused(client, tile, tmp_path):
    image, t, crs, _ = tile
    vectors = write_geojson(tmp_path / "v.geojson", [({"landuse": "house"}, Polygon([px(t, 1, 1), px(t, 5, 1), px(t, 5, 5)]))], crs)
    mask = tmp_path / "m.png"
    Image.fromarray(np.zeros((900, 900), np.uint8)).save(mask)
    r = client.post("/v1/samples", files={"image": ("a.tif", image.read_bytes()), "mask": ("m.png", mask.read_bytes()),
                                          "vectors": ("v.geojson", vectors.read_bytes())}, data={"class_field": "landuse"})
    assert r.status_code == 422 and "exactly one of them" in r.json()["detail"]
    r = client.post("/v1/samples", files={"image": ("a.tif", image.read_bytes())})
    assert r.status_code == 422 and "mask PNG or vectors" in r.json()["detail"]
    Image.fromarray(np.full((900, 900), IGNORE_INDEX, np.uint8)).save(mask)
    r = client.post("/v1/samples", files={"image": ("a.tif", image.read_bytes()), "mask": ("m.png", mask.read_bytes())})
    assert r.status_code == 422 and "labels no pixel" in r.json()["detail"]


def test_cli_posts_to_a_running_server_that_holds_the_data_dir(cli, tile, labels, tmp_path, tiny_checkpoint):
    """While `landsentry serve` holds the data directory the CLI refuses to write into it, and --server posts instead."""
    from tests.serving import get_json, serve

    image, _, crs, _ = tile
    feats, expected = labels
    vectors = write_geojson(tmp_path / "parcels.geojson", feats, crs, to_crs="EPSG:4326")
    data = tmp_path / "served"
    maps = [f"--map={value}={name}" for value, name in MAPPING.items()]
    with serve(data, LANDSENTRY_MODEL=str(tiny_checkpoint), LANDSENTRY_WORKER="false") as base:
        code, _, err = cli(["samples", "add", image, "--vectors", vectors, "--class-field", "landuse", *maps, "--data-dir", data])
        assert code == 2 and "a landsentry server is using" in err and "--server" in err
        code, out, err = cli(["samples", "add", image, "--vectors", vectors, "--class-field", "landuse", *maps, "--server", base, "--json"])
        assert code == 0, err
        sample = json.loads(out)
        assert [s["id"] for s in get_json(base + "/v1/samples")["samples"]] == [sample["id"]]
        assert np.array_equal(np.asarray(Image.open(data / "samples" / "masks" / f"{sample['id']}.png")), expected)
        code, out, err = cli(["samples", "add", image, "--vectors", vectors, "--class-field", "landuse", "--map=house=building", "--server", base])
        assert code == 2 and "the server refused the sample (HTTP 422)" in err and "does not name 'street'" in err


def test_naip_four_band_tile_with_web_mercator_polygons(client, settings, shared_file, tmp_path):
    """The real NAIP GeoTIFF (4 bands, 5 m, EPSG:26914) labelled by polygons sent in EPSG:3857."""
    image = shared_file("naip_pair/m_4709963_se_14_1_20200831.tif")
    with rasterio.open(image) as ds:
        t, crs, hw = ds.transform, ds.crs, (ds.height, ds.width)
    field = Polygon([px(t, 100.25, 50.25), px(t, 400.75, 50.25), px(t, 400.75, 300.75), px(t, 100.25, 300.75)])
    pond = Polygon([px(t, 600.25, 500.25), px(t, 700.75, 500.25), px(t, 700.75, 560.75), px(t, 600.25, 560.75)])
    vectors = write_geojson(tmp_path / "farm.geojson", [({"landuse": "field"}, field), ({"landuse": "pond"}, pond)], crs)
    doc = json.loads(vectors.read_text())  # the same polygons in web mercator, with a legacy crs member
    for feature in doc["features"]:
        feature["geometry"] = transform_geom(crs, "EPSG:3857", feature["geometry"])
    doc["crs"] = {"type": "name", "properties": {"name": "EPSG:3857"}}
    vectors.write_text(json.dumps(doc))
    r = post(client, image, vectors, class_field="landuse", class_map=json.dumps({"field": "vegetation", "pond": "water"}))
    assert r.status_code == 201, r.text
    expected = np.full(hw, IGNORE_INDEX, np.uint8)
    expected[50:301, 100:401] = CLASS_ID["vegetation"]
    expected[500:561, 600:701] = WATER
    assert np.array_equal(stored_mask(settings, r.json()["id"]), expected)


def test_geopackage_layers_are_chosen_by_name(client, tile, labels, tmp_path):
    image, _, crs, _ = tile
    feats, _ = labels
    vectors = write_gpkg(tmp_path / "two.gpkg", feats, crs, layer="parcels")
    write_gpkg(vectors, feats[:1], crs, layer="roads")
    r = post(client, image, vectors, class_field="landuse", class_map=json.dumps(MAPPING))
    assert r.status_code == 422 and "has 2 layers (parcels, roads)" in r.json()["detail"]
    r = post(client, image, vectors, class_field="landuse", class_map=json.dumps(MAPPING), layer="lakes")
    assert r.status_code == 422 and "no layer 'lakes'" in r.json()["detail"]
    r = post(client, image, vectors, class_field="landuse", class_map=json.dumps(MAPPING), layer="roads")
    assert r.status_code == 201 and r.json()["class_pixels"]["building"] == 20 * 25


def test_names_are_the_vocabularys(client, settings, tile, tmp_path):
    """Without class_map the property holds class names as classes.json takes them; not_NAME is a partial label."""
    from landsentry.models.vocabulary.classes import not_class

    image, t, crs, hw = tile
    a = Polygon([px(t, 0.25, 0.25), px(t, 3.75, 0.25), px(t, 3.75, 1.75), px(t, 0.25, 1.75)])
    b = Polygon([px(t, 0.25, 5.25), px(t, 2.75, 5.25), px(t, 2.75, 8.75), px(t, 0.25, 8.75)])
    c = Polygon([px(t, 10.25, 10.25), px(t, 11.75, 10.25), px(t, 11.75, 11.75), px(t, 10.25, 11.75)])
    feats = [({"landuse": "Bare soil"}, a), ({"landuse": "not_road"}, b), ({"landuse": "unknown"}, c)]
    r = post(client, image, write_geojson(tmp_path / "names.geojson", feats, crs), class_field="landuse")
    assert r.status_code == 201, r.text
    expected = np.full(hw, IGNORE_INDEX, np.uint8)
    expected[0:2, 0:4] = CLASS_ID["bare_soil"]
    expected[5:9, 0:3] = not_class(ROAD)
    assert np.array_equal(stored_mask(settings, r.json()["id"]), expected)
    feats[0] = ({"landuse": "house"}, a)
    r = post(client, image, write_geojson(tmp_path / "names.geojson", feats, crs), class_field="landuse")
    assert r.status_code == 422 and "'house' is not a class name and no class mapping was given" in r.json()["detail"]
