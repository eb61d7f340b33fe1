"""The change head's training data on the real shared folders, the recipe end to end for a few steps, and threshold tuning."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from landsentry.models.analysis.change import ChangeParams
from landsentry.models.evaluation.change import PairMaps
from landsentry.models.nn.change_net import load_change_model
from landsentry.training.change_data import TEST_HOLDOUT, ChangeMix, Mix, held_out, shared_sources
from landsentry.training.change_augment import date_transform

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shared_root(shared_file):
    for path in ("levir_cd/train/A", "egy_bcd/val/A", "sztaki_airchange/Archieve/A.png", "dubai_aerial/images", "loveda/Val",
                 "roads_cil/masks", "deepglobe_roads/masks"):
        shared_file(path)
    return shared_file("README.md").parent


def test_test_pairs_are_never_read(shared_root):
    sources = shared_sources(shared_root)
    names = sources.names()
    assert not [n for n in names if n.startswith(("levir/test", "egy/test", "sztaki/Szada"))]
    assert {k: len(v) for k, v in sources.pairs.items()} == {"levir": 4, "egy": 7, "sztaki": 6}
    assert {k: len(v) for k, v in sources.labelled.items()} == {"dubai": 53, "loveda": 3, "roads": 248, "new_buildings": 11}
    dev = shared_sources(shared_root, ["levir/val", "egy/val", "sztaki/Archieve"])
    assert {k: len(v) for k, v in dev.pairs.items()} == {"levir": 3, "egy": 4, "sztaki": 5}
    assert not [n for n in dev.names() if "/val/" in n or "Archieve" in n], "a validation run holds its pairs out of every pool"
    assert held_out("sztaki/Szada_3", "sztaki/Szada", ()) and held_out("egy/test/test_1/after", "egy/test_1", ())
    assert not held_out("egy/train/train_1", "egy/train_1", ()) and TEST_HOLDOUT == ("levir/test", "sztaki/Szada", "egy/test")


def test_the_stream_is_seeded_and_mixes_every_kind(shared_root):
    sources = shared_sources(shared_root, families=("levir", "egy", "dubai", "roads"))
    data = ChangeMix(sources, Mix(crop=96), samples=40, seed=7, transform=date_transform())
    first, again = data[3], data[3]
    assert all(torch.equal(first[k], again[k]) for k in ("before", "after", "change"))
    kinds = [data[i]["kind"] for i in range(40)]
    assert set(kinds) == {"real", "paste", "unrelated"}
    sample = data[0]
    assert sample["before"].shape == sample["after"].shape == (3, 96, 96) and sample["before"].dtype == torch.uint8
    assert sample["change"].dtype == torch.int64 and set(sample["change"].unique().tolist()) <= {0, 1, 255}
    with pytest.raises(IndexError):
        data[40]
    only_real = ChangeMix(sources, Mix(real=1.0, paste=0.0, unrelated=0.0, crop=96), samples=5, seed=0)
    assert {only_real[i]["kind"] for i in range(5)} == {"real"}


def test_a_few_steps_of_the_recipe_end_to_end(shared_root, tmp_path):
    from landsentry.training.train_change import main

    out = tmp_path / "run"
    assert main(["--data", str(shared_root), "--steps", "3", "--batch-size", "2", "--crop-size", "64", "--out", str(out),
                 "--holdout", "levir/val", "--families", "levir", "egy", "loveda", "roads", "new_buildings"]) == 0
    model, ckpt = load_change_model(out / "change.pt")
    meta = ckpt.metadata
    assert meta["held_out"] == [*TEST_HOLDOUT, "levir/val"] and meta["steps"] == 3
    assert sum(meta["samples_by_kind"].values()) == 6
    assert not [n for n in meta["trained_on"] if n.startswith(("levir/test", "levir/val", "egy/test"))]
    assert meta["families"] == {"levir": 3, "egy": 7, "loveda": 3, "roads": 248, "new_buildings": 10}
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert model(x, x).shape == (1, 1, 64, 64)
    assert "step     2" in (out / "train.log").read_text()


def test_tuning_scores_each_setting_on_fixed_maps():
    """`tune_change.score` on hand-made maps: the learned threshold decides exactly which pixels count."""
    from landsentry.training.tune_change import parse_grid, score

    truth = np.zeros((40, 40), bool)
    truth[:20, :20] = True  # 400 changed pixels
    change = np.zeros((40, 40), np.float32)
    change[:20, :20] = 0.6
    change[20:30, 20:30] = 0.45  # 100 false alarms under a threshold of 0.4, none at 0.5
    probs = np.zeros((6, 40, 40), np.float32)
    probs[0] = 1.0
    maps = PairMaps(probs, probs, change, np.ones((40, 40), bool), truth)
    sets = {"a": ([maps], None)}
    strict = score(sets, ChangeParams(learned_threshold=0.5), "learned")
    loose = score(sets, ChangeParams(learned_threshold=0.4), "learned")
    assert strict["sets"]["a"]["f1"] == pytest.approx(1.0) and strict["mean_f1"] == pytest.approx(1.0)
    assert loose["sets"]["a"]["precision"] == pytest.approx(0.8)
    assert score(sets, ChangeParams(), "class")["sets"]["a"]["recall"] == 0.0, "identical class maps show no change"
    assert parse_grid(["learned_threshold=0.3,0.5", "tolerance_px=2"]) == {"learned_threshold": [0.3, 0.5], "tolerance_px": [2]}
    with pytest.raises(SystemExit):
        parse_grid(["nope=1"])
