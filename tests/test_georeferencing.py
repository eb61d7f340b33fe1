"""Georeferencing in every form GDAL reads is used, or the file is refused saying which: never dropped.

A real NAIP crop (../shared/data, EPSG:26914, 5 m) is rewritten with a rotated geotransform, with
ground control points (that an affine transform fits, and that it does not), with RPCs only, with a
CRS but no positions, and as a two-page TIFF; `landsentry predict` (tiny model) reads each.
"""
from __future__ import annotations

import json
import warnings

import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.rpc import RPC
from shapely.geometry import box, mapping, shape

from tests.bad_files import naip_crop, write_tif

FAST = ["--tile", "256", "--overlap", "32", "--quiet", "--min-area", "0"]


def predict(cli, path, outdir, checkpoint, *extra) -> tuple[int, str, dict | None]:
    code, _, err = cli(["predict", path, "-o", outdir, "--checkpoint", checkpoint, *FAST, *extra])
    summary = json.loads((outdir / "summary.json").read_text()) if code == 0 else None
    return code, err, summary


def regions(outdir) -> list[dict]:
    return json.loads((outdir / "regions.geojson").read_text())["features"]


@pytest.fixture(scope="module")
def north_up(shared_file, tmp_path_factory, tiny_checkpoint, cli):
    data, geo = naip_crop(shared_file)
    folder = tmp_path_factory.mktemp("north")
    path = write_tif(folder / "north.tif", data, **geo)
    code, err, summary = predict(cli, path, folder / "out", tiny_checkpoint)
    assert code == 0, err
    return data, geo, summary, regions(folder / "out")


def test_a_rotated_geotransform_is_used(north_up, tmp_path, tiny_checkpoint, cli):
    data, geo, summary, expected = north_up
    rotated = geo["transform"] @ Affine.rotation(30)
    code, err, rot = predict(cli, write_tif(tmp_path / "rot.tif", data, crs=geo["crs"], transform=rotated), tmp_path / "out", tiny_checkpoint)
    assert code == 0, err
    got = regions(tmp_path / "out")
    assert [f["properties"]["area_m2"] for f in got] == [f["properties"]["area_m2"] for f in expected]
    # the same pixels, placed on the ground by the rotated grid
    first = shape(got[0]["geometry"]).centroid
    col, row = ~geo["transform"] @ shape(expected[0]["geometry"]).centroid.coords[0]
    assert (first.x, first.y) == pytest.approx(rotated @ (col, row), abs=1e-6)
    assert rot["kinds"] == summary["kinds"] and rot["pixel_area_m2"] == pytest.approx(25.0)
    assert summary["inputs"]["image"]["georeferencing"] == {"source": "geotransform", "crs": "EPSG:26914"}
    assert rot["inputs"]["image"]["georeferencing"]["source"] == "rotated geotransform"


def _gcps(transform: Affine, size: int, nudge: float = 0.0) -> list[GroundControlPoint]:
    points = [(0, 0), (0, size), (size, 0), (size, size), (size / 2, size / 3)]
    return [GroundControlPoint(row, col, *(transform @ (col + (nudge if i == 4 else 0), row))) for i, (col, row) in enumerate(points)]


def test_ground_control_points_that_fit_an_affine_grid_are_used(north_up, tmp_path, tiny_checkpoint, cli):
    data, geo, summary, expected = north_up
    path = write_tif(tmp_path / "gcp.tif", data, gcps=_gcps(geo["transform"], data.shape[1]), crs=geo["crs"])
    with rasterio.open(path) as ds:
        assert ds.crs is None and ds.transform.is_identity  # GDAL itself places nothing without the GCPs
    left, top = geo["transform"] @ (0, 0)
    permits = tmp_path / "permits.geojson"  # permits need a placed image: with GCPs, this one is
    permits.write_text(json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:26914"}},
                                   "features": [{"type": "Feature", "properties": {}, "geometry": mapping(box(left, top - 600, left + 600, top))}]}))
    code, err, gcp = predict(cli, path, tmp_path / "out", tiny_checkpoint, "--permits", permits)
    assert code == 0, err
    assert gcp["crs"] == "EPSG:26914" and gcp["transform"] == pytest.approx(list(geo["transform"])[:6])
    assert gcp["inputs"]["image"]["georeferencing"]["source"].startswith("5 ground control points, fitted by an affine transform")
    assert gcp["permits"]["parcels_on_image"] == 1 and gcp["suspected_illegal"] > 0
    assert {k: (v["count"], v["area_m2"]) for k, v in gcp["kinds"].items()} == {k: (v["count"], v["area_m2"]) for k, v in summary["kinds"].items()}
    assert [f["properties"]["area_m2"] for f in regions(tmp_path / "out")] == [f["properties"]["area_m2"] for f in expected]


@pytest.mark.parametrize("case, words", [
    ("gcps-no-affine", ["5 ground control points that no affine transform fits", "gdalwarp -r bilinear gcps-no-affine.tif"]),
    ("rpc-only", ["georeferenced only by RPCs", "gdalwarp -rpc"]),
    ("crs-no-transform", ["names a CRS (EPSG:26914) but has no geotransform"]),
    ("two-pages", ["holds 2 images (TIFF pages)", "GTIFF_DIR:2:two-pages.tif"]),
])
def test_georeferencing_that_cannot_be_used_is_refused_saying_which(north_up, tmp_path, tiny_checkpoint, cli, case, words):
    data, geo, _, _ = north_up
    path = tmp_path / f"{case}.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        if case == "gcps-no-affine":  # one point 40 px off: a warped scan, not an affine grid
            write_tif(path, data, gcps=_gcps(geo["transform"], data.shape[1], nudge=40), crs=geo["crs"])
        elif case == "rpc-only":
            rpc = RPC(height_off=500, height_scale=500, lat_off=47.0, lat_scale=0.01, long_off=-99.0, long_scale=0.01,
                      line_off=128, line_scale=128, samp_off=128, samp_scale=128, line_num_coeff=[0, 0, -1] + [0] * 17,
                      line_den_coeff=[1] + [0] * 19, samp_num_coeff=[0, 1] + [0] * 18, samp_den_coeff=[1] + [0] * 19)
            write_tif(path, data, rpcs=rpc)
        elif case == "crs-no-transform":
            write_tif(path, data, crs=geo["crs"])
        else:
            write_tif(path, data, **geo)
            with rasterio.open(path) as ds, rasterio.open(tmp_path / "page2.tif", "w", **ds.profile) as page:
                page.write(ds.read()[:, ::-1])
            from PIL import Image

            pages = [Image.open(p) for p in (path, tmp_path / "page2.tif")]
            pages[0].save(path, save_all=True, append_images=pages[1:])
    code, err, _ = predict(cli, path, tmp_path / "out", tiny_checkpoint)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
