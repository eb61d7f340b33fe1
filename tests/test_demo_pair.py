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
