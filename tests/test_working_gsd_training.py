"""Training at a working ground resolution: each source's crops zoomed by its GSD / working GSD, recorded in the checkpoint.

Real LoveDA tiles (0.3 m) from ../shared/data beside a plain folder of Dubai crops (no stated resolution),
made here as in tests/test_train.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import landsentry
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.training.config import make_config
from landsentry.training.data_setup import build_data, source_zoom
from tests.conftest import require_shared

TINY = ["--decoder-channels", "16", "16", "16", "16", "--crop-size", "64", "--batch-size", "2",
        "--samples-per-epoch", "4", "--eval-tile", "128", "--warmup-steps", "1", "--no-pretrained"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    dubai = require_shared("dubai_aerial/images").parent
    root = tmp_path_factory.mktemp("crops")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i, image in enumerate(sorted((dubai / "images").glob("*t8.jpg"))[:2]):
        Image.open(image).convert("RGB").crop((200, 200, 328, 328)).save(root / "images" / f"c{i}.png")
        Image.open(dubai / "masks" / f"{image.stem}.png").crop((200, 200, 328, 328)).save(root / "masks" / f"c{i}.png")
    (root / "classes.json").write_text(json.dumps({"0": "ignore", "1": "building", "2": "bare_soil", "3": "road", "4": "vegetation", "5": "water"}))
    return root


def _scales(dataset) -> tuple[float, float]:
    return next(op for op in dataset.transform.transforms if type(op).__name__ == "RandomScaleCrop").scale


def test_each_source_is_zoomed_to_the_working_resolution(folder):
    loveda = require_shared("loveda")
    cfg = make_config({"data": [f"loveda:{loveda}", f"folder:{folder}"], "working_gsd": 0.6, "scale_range": [0.8, 1.2],
                       "holdout": ["loveda/Val/Rural/0"], "samples_per_epoch": 10})
    data = build_data(cfg)
    loveda_crops, folder_crops = data.train.datasets  # one dataset per source, in the order given
    assert _scales(loveda_crops) == pytest.approx((0.4, 0.6))  # 0.3 m shown as 0.6 m: halved
    assert _scales(folder_crops) == pytest.approx((0.8, 1.2))  # unknown resolution: as it is
    assert data.val_zooms == [0.5] * len(data.val_records)
    assert source_zoom(None, 0.5) == 1.0 and source_zoom(0.5, None) == 1.0


def test_the_checkpoint_records_its_working_resolution(tmp_path, folder):
    out = tmp_path / "run"
    assert landsentry.main(["train", "--data", f"folder:{folder}", "--val-data", f"folder:{folder}", "--epochs", "1",
                            "--working-gsd", "0.4", "--out", str(out), *TINY]) == 0
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.metadata["gsd"] == 0.4 and ckpt.metadata["config"]["working_gsd"] == 0.4


def test_bad_working_resolution_is_refused(tmp_path, folder, capsys):
    assert landsentry.main(["train", "--data", f"folder:{folder}", "--working-gsd", "0", "--out", str(tmp_path), *TINY]) == 2
    assert "working_gsd must be" in capsys.readouterr().err
