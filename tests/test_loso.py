"""`landsentry loso`: each source is left out of a (tiny) training run and scored on all its images.

Real sources from ../shared/data (LoveDA, 3 tiles; DeepGlobe roads, 4 tiles); a 16-channel decoder
from random weights, a few crops: what is checked is the table's bookkeeping, not accuracy.
"""
from __future__ import annotations

import json

import landsentry
from tests.conftest import require_shared


def test_leave_one_source_out_table(tmp_path, capsys):
    loveda = require_shared("loveda/Val/Rural/images_png/0.png").parents[3]
    deepglobe = require_shared("deepglobe_roads/images/104.jpg").parents[1]
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({
        "data": [f"loveda:{loveda}", f"deepglobe_roads:{deepglobe}"], "data_weights": [0.5, 0.5], "epochs": 1,
        "samples_per_epoch": 4, "batch_size": 2, "crop_size": 64, "decoder_channels": [16, 16, 16, 16], "pretrained": False,
        "warmup_steps": 1, "eval_tile": 128, "threads": 1}))
    out = tmp_path / "loso"
    assert landsentry.main(["loso", "--config", str(recipe), "--out", str(out)]) == 0
    table = json.loads((out / "loso.json").read_text())
    assert set(table) == {"loveda", "deepglobe_roads"}
    assert table["loveda"]["trained_on"] == [f"deepglobe_roads:{deepglobe}"]
    assert table["deepglobe_roads"]["trained_on"] == [f"loveda:{loveda}"]
    roads = table["deepglobe_roads"]["iou"]
    assert roads["road"] is not None and all(v is None for k, v in roads.items() if k != "road"), "a road-only source scores road only"
    assert table["deepglobe_roads"]["miou"] == roads["road"]
    assert table["loveda"]["iou"]["bare_soil"] is None  # none of the three LoveDA tiles has barren pixels
    printed = capsys.readouterr().out
    assert "| loveda |" in printed and "| deepglobe_roads |" in printed
    # a second call finds the table complete and trains nothing
    before = {p: p.stat().st_mtime for p in out.rglob("*.pt")}
    assert landsentry.main(["loso", "--config", str(recipe), "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime for p in out.rglob("*.pt")} == before
