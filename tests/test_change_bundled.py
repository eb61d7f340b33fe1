"""Sensible flags from the bundled models (segmentation + learned change head) on real imagery.

The pairs are generated here from one real image the segmentation model never trained on (Dubai
aerial tile 8, held out): a 512 px crop as "before", and as "after" the same crop with an 80x80
block of real rooftops pasted onto bare land (a planted new building), shifted by 2 px (a
misregistered copy) or with shifted colours (another sensor or season). The NAIP pair is the real
2010/2020 one.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from shapely.geometry import box, shape

from landsentry.models.nn.change_net import BUNDLED_CHANGE_CHECKPOINT
from landsentry.models.nn.checkpoint import BUNDLED_CHECKPOINT

pytestmark = pytest.mark.skipif(not BUNDLED_CHECKPOINT.is_file(), reason="no bundled model in this checkout")

DUBAI = "dubai_aerial/images/image_part_008t8.jpg"
CROP = (768, 1088)  # a 512 px window with buildings and bare land side by side
SOURCE, TARGET = (416, 336), (368, 0)  # rooftops (92% building in the labels) -> bare land (100% land)


@pytest.fixture(scope="module")
def dubai_pairs(shared_file, tmp_path_factory) -> dict[str, Path]:
    img = np.asarray(Image.open(shared_file(DUBAI)).convert("RGB"))
    r, c = CROP
    crop = img[r : r + 512, c : c + 512].copy()
    root = tmp_path_factory.mktemp("dubai_pairs")
    planted = crop.copy()
    (sy, sx), (ty, tx) = SOURCE, TARGET
    planted[ty : ty + 80, tx : tx + 80] = crop[sy : sy + 80, sx : sx + 80]
    colour = np.clip((crop.astype(np.float32) - 128) * 0.8 + 148, 0, 255)
    colour[..., 0] = np.clip(colour[..., 0] * 1.08, 0, 255)
    images = {"before": crop, "planted": planted, "shift": np.roll(crop, (2, -2), (0, 1)), "colour": colour.astype(np.uint8)}
    out = {}
    for name, array in images.items():
        out[name] = root / f"{name}.png"
        Image.fromarray(array).save(out[name])
    return out


def run(cli, before, after, outdir, *extra) -> tuple[dict, list]:
    code, _, err = cli(["predict", after, "--before", before, "-o", outdir, "--gsd", "1.0", "--quiet", *extra])
    assert code == 0, err
    return json.loads((outdir / "summary.json").read_text()), json.loads((outdir / "flags.geojson").read_text())["features"]


def test_planted_building_is_the_one_flag(dubai_pairs, cli, tmp_path):
    summary, flags = run(cli, dubai_pairs["before"], dubai_pairs["planted"], tmp_path / "out")
    if BUNDLED_CHANGE_CHECKPOINT.is_file():
        assert summary["method"] == "class comparison + learned change model"
    buildings = [f for f in flags if f["properties"]["kind"] == "new_building"]
    assert len(buildings) == 1 and len(flags) <= 2, [f["properties"] for f in flags]
    ty, tx = TARGET
    planted = box(tx, -(ty + 80), tx + 80, -ty)  # PNG with --gsd 1: x = column, y = -row
    geom = shape(buildings[0]["geometry"])
    assert geom.intersection(planted).area / geom.union(planted).area > 0.7
    assert buildings[0]["properties"]["before_class"] == "bare_soil"


@pytest.mark.parametrize("variant", ["shift", "colour"])
def test_misregistered_or_recoloured_copy_is_not_change(dubai_pairs, cli, tmp_path, variant):
    summary, flags = run(cli, dubai_pairs["before"], dubai_pairs[variant], tmp_path / "out")
    changed = sum(summary["change_pixels"].values())
    assert changed < 0.002 * 512 * 512, (variant, summary["change_pixels"])
    assert len(flags) <= 1


def test_naip_pair_gives_a_short_list(shared_file, cli, tmp_path):
    """10 years of North Dakota farmland: few flags, not a flood (tilled fields do read as bare soil)."""
    before = shared_file("naip_pair/m_4709963_se_14_1_20100629.tif")
    after = shared_file("naip_pair/m_4709963_se_14_1_20200831.tif")
    outdir = tmp_path / "naip"
    code, _, err = cli(["predict", after, "--before", before, "-o", outdir, "--quiet"])
    assert code == 0, err
    flags = json.loads((outdir / "flags.geojson").read_text())["features"]
    assert 0 < len(flags) <= 30
    with rasterio.open(outdir / "change.tif") as ds:
        codes = ds.read(1)
    assert ((codes > 0) & (codes < 255)).mean() < 0.1
