"""The committed demo pair is what `sample_tiles/make_demo_pair.py` makes: same seed, same pixels.

Pixels, georeferencing and GeoJSON are compared rather than file bytes: another GDAL may encode
the same raster slightly differently."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import rasterio

TILES = Path(__file__).resolve().parents[1] / "sample_tiles"


def _script():
    spec = importlib.util.spec_from_file_location("make_demo_pair", TILES / "make_demo_pair.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_pair_regenerates_exactly(tmp_path):
    paths = _script().make(tmp_path)
    for key in ("after", "before"):
        with rasterio.open(paths[key]) as made, rasterio.open(TILES / paths[key].name) as kept:
            assert (made.crs, made.transform, made.dtypes) == (kept.crs, kept.transform, kept.dtypes)
            assert np.array_equal(made.read(), kept.read()), f"{paths[key].name} differs: re-run make_demo_pair.py"
    made, kept = (json.loads(p.read_text()) for p in (paths["permits"], TILES / paths["permits"].name))
    assert made == kept


def test_demo_pair_differs_only_around_the_removed_houses(tmp_path):
    script = _script()
    with rasterio.open(TILES / "demo_after.tif") as a, rasterio.open(TILES / "demo_before.tif") as b, \
            rasterio.open(TILES / "spacenet_atlanta_pan.tif") as src:
        after, before = a.read(1).astype(float), b.read(1).astype(float)
        assert a.crs == b.crs == src.crs and a.transform == b.transform
        assert np.array_equal(a.read(1), src.read(1, window=script.CROP))  # the after tile is the real crop
    changed = np.abs(before / before.mean() - after / after.mean()) > 0.2
    inside = np.zeros_like(changed)
    for c0, r0, c1, r1 in script._crop_boxes().values():
        inside[r0:r1, c0:c1] = True
    assert changed[inside].mean() > 0.3  # the houses are gone
    assert changed[~inside].mean() < 0.02  # elsewhere only gain and noise
    permits = json.loads((TILES / "demo_permits.geojson").read_text())
    assert len(permits["features"]) == len(script.PERMITTED)


def flags_by_house(flags: dict) -> dict[str, list[tuple[str, bool]]]:
    """Each demo house's flags as (kind, suspected), matched by overlap with the house boxes of make_demo_pair.py."""
    from shapely.geometry import box, shape

    with rasterio.open(TILES / "demo_after.tif") as ds:
        t = ds.transform
    houses = {n: box(*(t * (c0, r1)), *(t * (c1, r0))) for n, (c0, r0, c1, r1) in _script()._crop_boxes().items()}
    found: dict[str, list[tuple[str, bool]]] = {name: [] for name in houses}
    for feature in flags["features"]:
        geometry, p = shape(feature["geometry"]), feature["properties"]
        hits = [name for name, house in houses.items() if geometry.intersects(house)]
        assert len(hits) == 1, f"a flag away from the houses or over several: {p}"
        found[hits[0]].append((p["kind"], p["suspected_illegal"]))
    return found


# What the bundled models find on the demo pair (README, "Try it"): four of the five new houses, one flag
# each; the three built outside the permits are suspected; the smaller permitted house "middle" is missed.
DEMO_FLAGS = {
    "north": [("new_building", True)], "centre": [("new_building", False)], "middle": [],
    "east": [("new_building", True)], "west": [("new_building", True)],
}


def test_bundled_models_flag_the_demo_houses_exactly(cli, tmp_path):
    code, _, err = cli(["predict", TILES / "demo_after.tif", "--before", TILES / "demo_before.tif",
                        "--permits", TILES / "demo_permits.geojson", "-o", tmp_path / "demo", "--quiet"])
    assert code == 0, err
    flags = json.loads((tmp_path / "demo" / "flags.geojson").read_text())
    assert flags_by_house(flags) == DEMO_FLAGS
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert (summary["flags"], summary["suspected_illegal"]) == (4, 3)
    assert summary["resolution"]["zoom"] == 1.6667  # 0.5 m shown to the network at its working 0.3 m
