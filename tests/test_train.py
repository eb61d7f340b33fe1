"""`landsentry train` end to end on real imagery: train, evaluate, resume, fine-tune, bad input, DDP.

Runs use a tiny decoder, 64-px crops and a handful of steps so the whole file stays fast; the
validation set is a folder of small crops cut here from real Dubai tiles (a fixture made in the
test from ../shared/data, never committed).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import landsentry
from landsentry.models.nn.checkpoint import load_checkpoint
from tests.conftest import ROOT, require_shared

TINY = ["--decoder-channels", "16", "16", "16", "16", "--crop-size", "64", "--batch-size", "2",
        "--samples-per-epoch", "4", "--eval-tile", "128", "--warmup-steps", "1"]


@pytest.fixture(scope="module")
def dubai() -> Path:
    return require_shared("dubai_aerial/images").parent


@pytest.fixture(scope="module")
def val_folder(tmp_path_factory, dubai: Path) -> Path:
    """Three 128-px crops of real Dubai tile-8 images with their masks, in the plain-folder layout."""
    root = tmp_path_factory.mktemp("val_folder")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i, image in enumerate(sorted((dubai / "images").glob("*t8.jpg"))[:3]):
        img = Image.open(image).convert("RGB").crop((200, 200, 328, 328))
        mask = Image.open(dubai / "masks" / f"{image.stem}.png").crop((200, 200, 328, 328))
        img.save(root / "images" / f"crop{i}.png")
        mask.save(root / "masks" / f"crop{i}.png")
    (root / "classes.json").write_text(json.dumps({"0": "ignore", "1": "building", "2": "bare_soil", "3": "road", "4": "vegetation", "5": "water"}))
    return root


def train(args: list[str], capsys=None) -> int:
    return landsentry.main(["train", *args])


def test_train_evaluates_and_writes_self_describing_checkpoints(tmp_path, dubai, val_folder, capsys):
    out = tmp_path / "run"
    # tile 3 (the smallest images) is held out whole; the crop folder is extra validation data
    code = train(["--data", f"dubai:{dubai}", "--holdout", "dubai/t3", "--val-data", f"folder:{val_folder}",
                  "--epochs", "2", "--out", str(out), "--no-pretrained", *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    log = (out / "train.log").read_text()
    assert "val mIoU" in printed  # the per-epoch line reaches the terminal too
    assert "mIoU" in log and "building" in log and "confusion" in log
    assert "samples/s" in log
    for name in ("last.pt", "best.pt", "curves.png", "history.json"):
        assert (out / name).is_file(), name
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.arch["decoder_channels"] == [16, 16, 16, 16]
    assert ckpt.metadata["epoch"] == 2 and len(ckpt.metadata["history"]) == 2
    assert not any(s.endswith("t3") for s in ckpt.metadata["data"]["train_sources"])
    assert sum(s.endswith("t3") for s in ckpt.metadata["data"]["val_sources"]) == 9
    assert set(ckpt.metadata["metrics"]["iou"]) == {"background", "building", "road", "bare_soil", "vegetation", "water"}
    assert ckpt.training_state["epoch"] == 2 and "optimizer" in ckpt.training_state
    assert load_checkpoint(out / "best.pt").training_state == {}  # released weights carry no optimizer state
    # the checkpoint runs through inference unchanged
    assert ckpt.build_model()(torch.zeros(1, 3, 64, 64)).shape == (1, 6, 64, 64)
    with Image.open(out / "curves.png") as curves:
        assert curves.size[0] > 100


def test_resume_continues_exactly_where_it_stopped(tmp_path, dubai, val_folder):
    common = ["--data", f"dubai:{dubai}", "--val-data", f"folder:{val_folder}", "--no-pretrained", "--seed", "3", *TINY]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train([*common, "--epochs", "2", "--out", str(straight)]) == 0
    # interrupted after epoch 1 of 2 (the time limit stops it), then resumed
    assert train([*common, "--epochs", "2", "--time-limit-min", "0.0001", "--out", str(split)]) == 0
    assert load_checkpoint(split / "last.pt").metadata["epoch"] == 1
    assert train(["--resume", str(split / "last.pt"), "--out", str(split)]) == 0
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert b.metadata["epoch"] == 2
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), f"{key} differs after resume"
    assert a.training_state["history"][-1]["loss"] == b.training_state["history"][-1]["loss"]


def test_fine_tune_records_parent_and_mixes_replay(tmp_path, dubai, val_folder):
    parent = tmp_path / "parent"
    assert train(["--data", f"folder:{val_folder}", "--epochs", "1", "--out", str(parent), "--no-pretrained", *TINY]) == 0
    child = tmp_path / "child"
    assert train(["--init-from", str(parent / "last.pt"), "--data", f"folder:{val_folder}", "--replay", f"dubai:{dubai}",
                  "--replay-share", "0.5", "--epochs", "1", "--out", str(child), *TINY]) == 0
    ckpt = load_checkpoint(child / "last.pt")
    assert ckpt.metadata["parent"]["path"] == str(parent / "last.pt")
    assert ckpt.metadata["data"]["replay_share"] == 0.5
    assert any(s.startswith("dubai/") for s in ckpt.metadata["data"]["replay_sources"])
    assert ckpt.arch["name"] == "lightunet_lite0"
    parent_weights = load_checkpoint(parent / "last.pt").state_dict
    changed = [k for k, v in ckpt.state_dict.items() if v.is_floating_point() and not torch.equal(v, parent_weights[k])]
    assert changed, "fine-tuning did not change the weights"


def test_fine_tune_keeps_the_parents_architecture(tmp_path, val_folder):
    """--init-from without --arch/--decoder-channels takes the parent's (a UNet parent stays a UNet)."""
    parent = tmp_path / "parent"
    assert train(["--data", f"folder:{val_folder}", "--epochs", "1", "--out", str(parent), "--no-pretrained",
                  "--arch", "unet_lite0", *TINY]) == 0
    child = tmp_path / "child"
    no_arch = TINY[5:]  # TINY without --decoder-channels 16 16 16 16
    assert TINY[:5] == ["--decoder-channels", "16", "16", "16", "16"]
    assert train(["--init-from", str(parent / "last.pt"), "--data", f"folder:{val_folder}", "--epochs", "1",
                  "--out", str(child), *no_arch]) == 0
    ckpt = load_checkpoint(child / "last.pt")
    assert ckpt.arch == {"name": "unet_lite0", "in_channels": 3, "num_classes": 6, "decoder_channels": [16, 16, 16, 16]}


def test_resume_from_other_architecture_is_refused(tmp_path, val_folder, capsys):
    run = tmp_path / "run"
    assert train(["--data", f"folder:{val_folder}", "--epochs", "1", "--out", str(run), "--no-pretrained", *TINY]) == 0
    code = train(["--resume", str(run / "last.pt"), "--decoder-channels", "32", "32", "32", "32", "--epochs", "2"])
    err = capsys.readouterr().err
    assert code != 0
    assert "cannot resume" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--data", "folder:/nonexistent/place"], "not found"),
    (["--epochs", "1"], "no training data"),
    (["--data", "folder:X", "--crop-size", "100"], "multiple of 32"),
    (["--data", "folder:X", "--loss-stride", "4"], "loss_stride must be 1"),
])
def test_bad_training_options_give_clear_errors(args, message, capsys, tmp_path):
    code = train([*args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_light_loss_path_and_frozen_encoder_statistics(tmp_path, val_folder, capsys):
    """--loss-stride 2 trains on the decoder's stride-2 logits; --encoder-bn-frozen keeps ImageNet's encoder statistics."""
    parent = tmp_path / "parent"
    assert train(["--data", f"folder:{val_folder}", "--epochs", "1", "--out", str(parent), *TINY,
                  "--loss-stride", "2", "--encoder-bn-frozen"]) == 0
    ckpt = load_checkpoint(parent / "last.pt")
    assert ckpt.metadata["config"]["loss_stride"] == 2 and ckpt.metadata["config"]["encoder_bn_frozen"] is True
    from landsentry.models.nn.network import build_model
    imagenet = build_model(decoder_channels=(16, 16, 16, 16), pretrained=True).state_dict()
    stats = [k for k in ckpt.state_dict if k.endswith("running_mean")]
    encoder_stats = [k for k in stats if k.startswith("encoder.")]
    assert encoder_stats and all(torch.equal(ckpt.state_dict[k], imagenet[k]) for k in encoder_stats)
    decoder_stats = [k for k in stats if k.startswith("decoder.")]
    assert any(not torch.equal(ckpt.state_dict[k], imagenet[k]) for k in decoder_stats), "decoder statistics must still train"
    trained = [k for k in ckpt.state_dict if k.startswith("encoder.blocks.15.") and k.endswith("weight")]
    assert any(not torch.equal(ckpt.state_dict[k], imagenet[k]) for k in trained), "the encoder's weights still train"
    # a decoder that ends at stride 1 has no stride-2 logits to read
    code = train(["--data", f"folder:{val_folder}", "--epochs", "1", "--out", str(tmp_path / "five"), *TINY[5:],
                  "--decoder-channels", "16", "16", "16", "16", "16", "--loss-stride", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "stops at stride 1" in err and "Traceback" not in err


def test_unknown_holdout_group_is_named(tmp_path, val_folder, capsys):
    code = train(["--data", f"folder:{val_folder}", "--holdout", "nowhere/t99", "--out", str(tmp_path / "o"), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "nowhere/t99" in err


def test_evaluate_cli_prints_per_class_iou(tmp_path, val_folder, tiny_checkpoint, capsys):
    out = tmp_path / "metrics.json"
    code = landsentry.main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", f"folder:{val_folder}",
                            "--tile", "128", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "mIoU" in text and "road" in text
    metrics = json.loads(out.read_text())
    assert 0.0 <= metrics["miou"] <= 1.0 and len(metrics["images"]) == 3
    assert "(eager, 128 px windows, 8 px overlap)" in text
    # the shipped path (ONNX Runtime) scores the same images the same way
    onnx = tmp_path / "onnx.json"
    assert landsentry.main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", f"folder:{val_folder}",
                            "--tile", "128", "--backend", "onnx", "--json", str(onnx)]) == 0
    assert json.loads(onnx.read_text())["miou"] == pytest.approx(metrics["miou"], abs=0.005)


def test_two_process_ddp_keeps_ranks_identical(tmp_path, val_folder):
    """torchrun with two gloo processes on CPU: both ranks end with the same weights."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "landsentry",
           "train", "--data", f"folder:{val_folder}", "--epochs", "1", "--out", str(out), "--no-pretrained",
           *TINY, "--threads", "1", "--samples-per-epoch", "8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [l for l in (proc.stdout + proc.stderr).splitlines() if "weights checksum" in l]
    assert len(lines) == 2, proc.stdout[-2000:]
    assert all("all ranks equal: True" in l for l in lines)
    sums = {l.split("checksum ")[1].split(";")[0] for l in lines}
    assert len(sums) == 1
    assert (out / "last.pt").is_file()
    assert load_checkpoint(out / "last.pt").metadata["hardware"]["world_size"] == 2
