"""The learned change head (models/nn/change_net.py, run by models/inference/runner.py): shape, what its checkpoint holds, loading, and its place in the pair path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from landsentry.models.inference.runner import ChangeRunner
from landsentry.models.nn.change_net import ARCH_NAME, BUNDLED_CHANGE_CHECKPOINT, SiameseChangeNet, change_arch, load_change_model
from landsentry.models.nn.checkpoint import Checkpoint, save_checkpoint
from landsentry.models.nn.encoder import IMAGENET_MEAN, IMAGENET_STD
from landsentry.models.vocabulary.errors import CheckpointError

FAST = ["--tile", "256", "--overlap", "32", "--quiet"]


@pytest.fixture(scope="module")
def model() -> SiameseChangeNet:
    torch.manual_seed(0)
    return SiameseChangeNet(pretrained=True).eval()


def _save(model: SiameseChangeNet, path: Path, bias: float | None = None) -> Path:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if bias is not None:  # a head that says "no change" (very negative) or "change" (very positive) everywhere
        state["head.weight"] = torch.zeros_like(state["head.weight"])
        state["head.bias"] = torch.full_like(state["head.bias"], bias)
    ckpt = Checkpoint(arch=change_arch(), state_dict=state, mean=IMAGENET_MEAN, std=IMAGENET_STD, metadata={"purpose": "tests"})
    return save_checkpoint(ckpt, path)


def test_forward_shape_and_frozen_encoder(model):
    x = torch.zeros(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x, x)
    assert out.shape == (2, 1, 64, 96)
    assert all(not p.requires_grad for p in model.encoder.parameters())
    model.train()
    assert not model.encoder.training, "frozen batch-norm statistics"
    model.eval()


def test_checkpoint_holds_only_the_small_head(model, tmp_path):
    state = model.state_dict()
    assert state and not any(k.startswith("encoder.") for k in state)
    n = sum(v.numel() for v in state.values())
    assert n < 200_000
    path = _save(model, tmp_path / "change.pt")
    assert path.stat().st_size < 2_000_000
    loaded, ckpt = load_change_model(path)
    assert ckpt.arch["name"] == ARCH_NAME
    x, y = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x, y), loaded(x, y), atol=1e-5)


def test_a_segmentation_checkpoint_is_not_a_change_model(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="not a change model"):
        load_change_model(tiny_checkpoint)


def test_missing_head_weights_are_refused(model, tmp_path):
    state = dict(model.state_dict())
    state.pop("head.bias")
    path = save_checkpoint(Checkpoint(arch=change_arch(), state_dict=state, mean=IMAGENET_MEAN, std=IMAGENET_STD), tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_change_model(path)


def test_runner_strips_cover_the_pair(model, shared_file):
    from landsentry.models.io.align import open_pair

    pair_dir = shared_file("levir_cd/test/A/test_2_0000_0000.png").parents[1]
    runner = ChangeRunner(model, tile=128, overlap=16, device="cpu")
    with open_pair(pair_dir / "A" / "test_2_0000_0000.png", pair_dir / "B" / "test_2_0000_0000.png") as pair:
        strips = list(runner.iter_strips(pair.before, pair.after))
    probs = np.concatenate([s.probs for s in strips], axis=1)
    assert probs.shape == (1, 256, 256) and 0 <= probs.min() and probs.max() <= 1
    assert [s.row0 for s in strips] == sorted(s.row0 for s in strips)


def test_runner_zoom_comes_from_the_checkpoint_and_keeps_the_grid(model, tmp_path):
    """A zoomed runner feeds the network windows resampled by `zoom` and hands back probabilities on the input grid."""
    ckpt = Checkpoint(arch=change_arch(), state_dict=model.state_dict(), mean=IMAGENET_MEAN, std=IMAGENET_STD, metadata={"zoom": 2.0})
    _, loaded = load_change_model(save_checkpoint(ckpt, tmp_path / "zoomed.pt"))
    seen = []
    hook = model.encoder.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    try:
        runner = ChangeRunner(model, loaded, tile=128, overlap=16, device="cpu", backend="eager")
        assert runner.zoom == 2.0 and ChangeRunner(model, loaded, device="cpu", backend="eager", zoom=1.0).zoom == 1.0
        batch = np.random.default_rng(0).uniform(0, 255, (1, 3, 96, 128)).astype(np.float32)
        out = runner.predict_batch(batch, batch)
    finally:
        hook.remove()
    assert out.shape == (1, 1, 96, 128) and 0 <= out.min() and out.max() <= 1
    assert seen and seen[0] == (192, 256), "the encoder saw the window at twice its size"
    assert ChangeRunner(model, None, device="cpu", backend="eager").zoom == 1.0
    with pytest.raises(ValueError, match="zoom"):
        ChangeRunner(model, None, device="cpu", backend="eager", zoom=10)


def test_learned_model_in_the_pair_path(model, shared_file, tmp_path, cli, tiny_checkpoint):
    """Combined with the class comparison: a model that sees no change vetoes unsure flags, one that sees change everywhere vetoes nothing."""
    from landsentry.models.nn.checkpoint import load_checkpoint

    sharp = load_checkpoint(tiny_checkpoint)
    sharp.state_dict = dict(sharp.state_dict)
    sharp.state_dict["segmentation_head.weight"] = sharp.state_dict["segmentation_head.weight"] * 40
    sharp_path = save_checkpoint(sharp, tmp_path / "sharp.pt")
    a = shared_file("levir_cd/test/A/test_2_0000_0000.png")
    b = a.parents[1] / "B" / a.name

    def flags(*extra) -> tuple[dict, list]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        code, _, err = cli(["predict", b, "--before", a, "-o", out, "--checkpoint", sharp_path, "--gsd", "0.5", *FAST,
                            "--min-after-prob", "0.5", *extra])
        assert code == 0, err
        return json.loads((out / "summary.json").read_text()), json.loads((out / "flags.geojson").read_text())["features"]

    plain_summary, plain = flags("--no-change-model")
    assert plain_summary["method"] == "class comparison" and plain
    yes_summary, yes = flags("--change-checkpoint", _save(model, tmp_path / "yes.pt", bias=20.0))
    assert yes_summary["method"] == "class comparison + learned change model"
    assert [f["geometry"] for f in yes] == [f["geometry"] for f in plain]
    no_summary, no = flags("--change-checkpoint", _save(model, tmp_path / "no.pt", bias=-20.0), "--change-threshold", "0.5")
    assert sum(no_summary["change_pixels"].values()) < sum(plain_summary["change_pixels"].values())


@pytest.mark.skipif(not BUNDLED_CHANGE_CHECKPOINT.is_file(), reason="no bundled change model in this checkout")
def test_bundled_change_model_is_small_and_says_what_it_held_out():
    model, ckpt = load_change_model()
    assert BUNDLED_CHANGE_CHECKPOINT.stat().st_size < 2_000_000
    held = ckpt.metadata["held_out"]
    assert "levir/test" in held and any(h.startswith("sztaki/Szada") for h in held)
    assert not any(t.startswith("levir/test") or t.startswith("sztaki/Szada") for t in ckpt.metadata["trained_on"])
