"""The bundled model loads safely and is accurate on real imagery it never saw (Dubai tile 8, a test split)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from landsentry.models.nn.checkpoint import BUNDLED_CHECKPOINT, load_checkpoint
from landsentry.models.data.layouts import DubaiAerial
from landsentry.models.vocabulary.classes import CLASS_ID, remap
from landsentry.models.inference.runner import Predictor
from tests.conftest import require_shared


def test_bundled_checkpoint_loads_and_describes_itself():
    ckpt = load_checkpoint()  # weights_only loading: the file must hold plain data only
    assert ckpt.path == BUNDLED_CHECKPOINT
    assert ckpt.arch["name"] == "lightunet_lite0" and ckpt.in_channels == 3 and ckpt.num_classes == 6
    assert BUNDLED_CHECKPOINT.stat().st_size < 25 * 2**20
    data = ckpt.metadata["data"]
    # Dubai tile 8 is a test split: never trained on, never used to select the model
    assert not any(src.endswith("t8") for src in data["train_sources"] + data["val_sources"])
    assert "dubai/t8" in data["test_groups_held_back"]
    # selected by the mean over held-out sources, each of which is in its metrics
    metrics = ckpt.metadata["metrics"]
    assert set(metrics["sources"]) == {"dubai", "roads_cil", "deepglobe_roads"}
    assert metrics["miou"] == pytest.approx(np.mean([s["miou"] for s in metrics["sources"].values()]), abs=1e-3)
    assert metrics["iou"]["building"] > 0.6


def test_bundled_model_on_a_held_out_dubai_image():
    image_path = require_shared("dubai_aerial/images/image_part_004t8.jpg")
    mask_path = require_shared("dubai_aerial/masks/image_part_004t8.png")
    image = np.asarray(Image.open(image_path).convert("RGB")).transpose(2, 0, 1).astype(np.float32)
    truth = remap(np.asarray(Image.open(mask_path)), DubaiAerial.codes)
    predictor = Predictor(load_checkpoint(), device="cpu", tile=512, overlap=64)
    pred = predictor.predict_array(image).argmax(0)
    labelled = truth != 255
    accuracy = float((pred[labelled] == truth[labelled]).mean())
    ious = {}
    for name in ("building", "road", "bare_soil"):
        t, p = (truth == CLASS_ID[name]) & labelled, (pred == CLASS_ID[name]) & labelled
        if t.sum() > 1000:
            ious[name] = (t & p).sum() / (t | p).sum()
    assert accuracy > 0.7, accuracy
    assert ious and min(ious.values()) > 0.35, ious
