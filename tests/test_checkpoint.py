"""Checkpoints: self-describing round trip, safe loading (no code runs), clear refusals, atomic writes."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from landsentry.models.nn import checkpoint as checkpoint_module
from landsentry.models.nn.checkpoint import FORMAT, FORMAT_VERSION, Checkpoint, checkpoint_from_model, load_checkpoint, save_checkpoint
from landsentry.models.vocabulary.classes import schema_dict
from landsentry.models.vocabulary.errors import CheckpointError
from landsentry.models.nn.network import build_model

ARCH = {"name": "unet_lite0", "in_channels": 4, "num_classes": 6, "decoder_channels": (16, 16, 16, 16)}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    net = build_model(**ARCH)
    with torch.no_grad():  # non-default BN statistics, so a lost buffer would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _save(model, path: Path, **fields) -> Path:
    fields.setdefault("mean", (0.4, 0.45, 0.5, 0.3))
    fields.setdefault("std", (0.2, 0.25, 0.3, 0.2))
    fields.setdefault("bands", ("red", "green", "blue", "nir"))
    return save_checkpoint(checkpoint_from_model(model, ARCH, **fields), path)


def test_round_trip(model, tmp_path):
    path = _save(model, tmp_path / "sub" / "model.pt", metadata={"dataset": "loveda", "miou": 0.42}, training_state={"epoch": 3})
    ckpt = load_checkpoint(path)
    assert ckpt.path == path
    # tuples in the architecture come back as lists (JSON-plain), so it compares equal to a training run's
    assert ckpt.arch == {**ARCH, "decoder_channels": [16, 16, 16, 16]} and ckpt.in_channels == 4 and ckpt.num_classes == 6
    assert ckpt.classes == schema_dict()
    assert ckpt.bands == ("red", "green", "blue", "nir")
    assert ckpt.mean == (0.4, 0.45, 0.5, 0.3) and ckpt.std == (0.2, 0.25, 0.3, 0.2)
    assert ckpt.metadata == {"dataset": "loveda", "miou": 0.42}
    assert ckpt.training_state == {"epoch": 3}
    original = model.state_dict()
    assert set(ckpt.state_dict) == set(original)
    for key, value in original.items():
        assert torch.equal(ckpt.state_dict[key], value), key
    rebuilt = ckpt.build_model()
    assert not rebuilt.training
    x = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


def test_loading_never_runs_code(tmp_path):
    marker = tmp_path / "pwned.txt"

    class Payload:
        def __reduce__(self):
            return (exec, (f"import pathlib; pathlib.Path({str(marker)!r}).write_text('code ran')",))

    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="not a landsentry checkpoint"):
        load_checkpoint(path)
    assert not marker.exists(), "loading a checkpoint executed code from the file"
    # the file really is dangerous: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_bare_state_dict_is_refused(model, tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="not a landsentry checkpoint.*bare state_dict"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", os.urandom(4096), b"PK\x03\x04" + os.urandom(100)], ids=["empty", "random", "fake-zip"])
def test_unreadable_files_are_refused(tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a landsentry checkpoint"):
        load_checkpoint(path)


def test_future_format_version_is_refused(model, tmp_path):
    path = tmp_path / "future.pt"
    data = checkpoint_from_model(model, ARCH, mean=(0.5,) * 4, std=(0.5,) * 4).to_dict()
    data["format_version"] = FORMAT_VERSION + 1
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}.*up to {FORMAT_VERSION}"):
        load_checkpoint(path)


def test_damaged_checkpoint_is_refused(model, tmp_path):
    path = tmp_path / "damaged.pt"
    data = checkpoint_from_model(model, ARCH, mean=(0.5,) * 4, std=(0.5,) * 4).to_dict()
    del data["normalization"]
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_normalisation_band_count_must_match(model, tmp_path):
    path = _save(model, tmp_path / "m.pt", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    with pytest.raises(CheckpointError, match="normalisation has 3 bands but the model takes 4"):
        load_checkpoint(path)


def test_weights_not_matching_the_architecture(model, tmp_path):
    """A checkpoint whose arch and weights disagree fails as a CheckpointError, not a torch traceback."""
    path = tmp_path / "mismatch.pt"
    data = checkpoint_from_model(model, ARCH, mean=(0.5,) * 4, std=(0.5,) * 4).to_dict()
    data["arch"]["decoder_channels"] = (32, 32, 32, 32)
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="mismatch.pt"):
        load_checkpoint(path).build_model()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_save_is_atomic(model, tmp_path, monkeypatch):
    path = _save(model, tmp_path / "m.pt", metadata={"version": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"], "no temp files left after a save"
    before = path.read_bytes()

    def crash(obj, fh, *args, **kwargs):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        _save(model, path, metadata={"version": 2})
    assert path.read_bytes() == before, "a failed save must leave the previous file intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"], "a failed save must not leave temp files"
    monkeypatch.undo()
    assert load_checkpoint(path).metadata == {"version": 1}


def test_cli_refuses_a_bad_checkpoint(tmp_path, cli):
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)  # generated: any valid image will do
    bad = tmp_path / "bad.pt"
    bad.write_bytes(os.urandom(1000))
    out = tmp_path / "out"
    code, stdout, stderr = cli(["predict", image, "-o", out, "--checkpoint", bad])
    assert code != 0
    assert "landsentry predict: error:" in stderr and "not a landsentry checkpoint" in stderr
    assert "Traceback" not in stderr + stdout
    assert not out.exists() or not any(out.iterdir())


def test_cli_refuses_mismatched_weights(model, tmp_path, cli):
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)  # generated: any valid image will do
    path = tmp_path / "mismatch.pt"
    data = checkpoint_from_model(model, ARCH, mean=(0.5,) * 4, std=(0.5,) * 4).to_dict()
    data["arch"]["num_classes"] = 3
    torch.save(data, path)
    code, stdout, stderr = cli(["predict", image, "-o", tmp_path / "out", "--checkpoint", path])
    assert code != 0
    assert "landsentry predict: error:" in stderr and "mismatch.pt" in stderr
    assert "Traceback" not in stderr + stdout


def test_checkpoint_dataclass_defaults():
    ckpt = Checkpoint(arch=dict(ARCH), state_dict={})
    assert ckpt.classes == schema_dict() and ckpt.bands == ("red", "green", "blue")
    assert ckpt.to_dict()["format"] == FORMAT and ckpt.to_dict()["normalization"]["input_range"] == 255.0
