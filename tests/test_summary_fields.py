"""Every field is reported the same way in every file: an unknown area is null (an empty CSV cell) everywhere,
never 0.0 in one file; units are in the names; one date and two dates share the summary's common fields.

A real Dubai crop as a PNG (no ground size), and the same with --gsd; the tiny model interprets them.
"""
from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image

from tests.bad_files import dubai_crop

FAST = ["--tile", "256", "--overlap", "32", "--quiet"]
COMMON = {"width", "height", "crs", "transform", "pixel_area_m2", "inputs", "flags", "suspected_illegal", "kinds", "rules", "permits"}


def _run(cli, checkpoint, outdir, *args) -> tuple[dict, list[dict], list[dict], list[dict]]:
    code, _, err = cli(["predict", *args, "-o", outdir, "--checkpoint", checkpoint, *FAST])
    assert code == 0, err
    summary = json.loads((outdir / "summary.json").read_text())
    flags = [f["properties"] for f in json.loads((outdir / "flags.geojson").read_text())["features"]]
    with (outdir / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    regions = [f["properties"] for f in json.loads((outdir / "regions.geojson").read_text())["features"]] if (outdir / "regions.geojson").exists() else []
    return summary, flags, rows, regions


def test_unknown_areas_are_null_in_every_file(shared_file, tmp_path, tiny_checkpoint, cli):
    png = tmp_path / "plain.png"
    Image.fromarray(dubai_crop(shared_file, 256).transpose(1, 2, 0)).save(png)
    summary, flags, rows, regions = _run(cli, tiny_checkpoint, tmp_path / "plain", png)
    assert flags and summary["flags"] == len(flags)
    assert summary["pixel_area_m2"] is None
    assert all(f["area_m2"] is None for f in flags) and all(r["area_m2"] is None for r in regions)
    assert all(k["area_m2"] is None and k["suspected_illegal_area_m2"] is None for k in summary["kinds"].values())
    assert all(r["area_m2"] == "" and r["suspected_illegal_area_m2"] == "" for r in rows)
    # with a ground size, the same fields are numbers in m² everywhere, zeros included
    summary, flags, rows, _ = _run(cli, tiny_checkpoint, tmp_path / "gsd", png, "--gsd", "0.5")
    assert summary["pixel_area_m2"] == 0.25
    assert all(isinstance(k["area_m2"], float) for k in summary["kinds"].values())
    assert sum(k["area_m2"] for k in summary["kinds"].values()) == sum(float(r["area_m2"]) for r in rows)
    assert np.isclose(sum(f["area_m2"] for f in flags), sum(float(r["area_m2"]) for r in rows), atol=0.05 * len(flags))


def test_one_and_two_dates_share_the_common_fields(tmp_path, tiny_checkpoint, cli):
    from tests.conftest import ROOT

    tiles = ROOT / "sample_tiles"
    one, *_ = _run(cli, tiny_checkpoint, tmp_path / "one", tiles / "demo_after.tif")
    two, *_ = _run(cli, tiny_checkpoint, tmp_path / "two", tiles / "demo_after.tif", "--before", tiles / "demo_before.tif", "--no-change-model")
    assert COMMON <= set(one) and COMMON <= set(two)
    for key in ("flags", "suspected_illegal"):
        assert isinstance(one[key], int) and isinstance(two[key], int)
    assert set(one["inputs"]) == {"image"} and set(two["inputs"]) == {"after", "before"}
    assert one["inputs"]["image"]["file"] == two["inputs"]["after"]["file"] == "demo_after.tif"
    assert one["pixel_area_m2"] == two["pixel_area_m2"] == 0.25
