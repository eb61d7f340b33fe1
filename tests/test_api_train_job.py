"""The train job's contracts with its child processes: a `--config` file that `landsentry train` reads,
progress and failure reasons as JSON lines (never the console), and children that start from any folder.

The runs here are tiny (random-weight model, 64-px crops, one or two steps) on small generated images.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from landsentry.api.proc import child_env, python_module
from landsentry.api.train_job import train_command, train_config
from landsentry.api.train_progress import failure_reason, last_event, progress_of
from landsentry.training.config import make_config, read_config_file

PARAMS = {"epochs": 2, "steps_per_epoch": 2, "crop_size": 64, "train": ["s_1", "s_2"], "val": [], "parent": "m_1"}


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A tiny checkpoint with its architecture as `landsentry train` stores it (decoder channels as a list)."""
    from landsentry.models.nn.checkpoint import checkpoint_from_model, save_checkpoint
    from landsentry.models.nn.network import build_model

    torch.manual_seed(0)
    arch = {"name": "unet_lite0", "in_channels": 3, "num_classes": 6, "decoder_channels": [16, 16, 16, 16]}
    path = tmp_path_factory.mktemp("parent") / "parent.pt"
    save_checkpoint(checkpoint_from_model(build_model(pretrained=False, **arch), arch), path)
    return path


def job_folder(root: Path, n: int = 2) -> Path:
    """JOB/data/train as the service snapshots samples: images and index masks of schema ids."""
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        mask = np.zeros((96, 128), np.uint8)
        mask[20:60, 30:90] = 1
        for sub, array in (("images", image), ("masks", mask)):
            (root / "data" / "train" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / "data" / "train" / sub / f"s_{i}.png")
    return root


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_config_file_is_what_landsentry_train_reads(tmp_path, parent):
    options = train_config(tmp_path, parent, {**PARAMS, "val": ["s_3"]}, ["loveda:/x"], threads=1, device="cpu")
    cfg = make_config(options)  # every key is a TrainConfig field, every value valid
    assert cfg.init_from == str(parent) and cfg.decoder_channels == [16, 16, 16, 16] and not cfg.pretrained
    assert cfg.data == [f"folder:{tmp_path / 'data' / 'train'}"] and cfg.val_data == [f"folder:{tmp_path / 'data' / 'val'}"]
    assert cfg.replay == ["loveda:/x"] and cfg.max_steps_per_epoch == 2 and cfg.threads == 1
    assert cfg.progress_file == str(tmp_path / "run" / "progress.jsonl")


def test_train_command_writes_the_config_then_resumes(tmp_path, parent):
    cmd = train_command(tmp_path, parent, PARAMS, [], threads=1, device="cpu")
    assert cmd[1:] == ["-P", "-m", "landsentry", "train", "--config", str(tmp_path / "train.json")]
    assert make_config(read_config_file(tmp_path / "train.json")).epochs == 2
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    cmd = train_command(tmp_path, parent, PARAMS, [], threads=1, device="cpu")
    assert cmd[-4:] == ["--resume", str(tmp_path / "run" / "last.pt"), "--threads", "1"]


def test_progress_is_read_from_the_last_complete_line(tmp_path):
    path = tmp_path / "progress.jsonl"
    assert last_event(path) is None and progress_of(None) is None
    step = {"event": "step", "epoch": 2, "epochs": 4, "step": 5, "steps": 10, "loss": 0.5, "samples_per_s": 3.0}
    path.write_text(json.dumps(step) + "\n" + '{"event": "epoch", "epo')  # a line still being written
    fraction, message = progress_of(last_event(path))
    assert fraction == pytest.approx(1.5 / 4) and message == "epoch 2/4, step 5/10, loss 0.500"
    done = {**step, "event": "epoch", "step": 10, "miou": 0.25}
    path.write_text(json.dumps(done) + "\n")
    assert progress_of(last_event(path)) == (0.5, "epoch 2/4 done, loss 0.500, held-out mIoU 0.250")
    path.write_text(json.dumps({"event": "error", "message": "no images in folder:/x", "user_error": True}) + "\n")
    assert progress_of(last_event(path)) is None and failure_reason(last_event(path)) == "no images in folder:/x"
    assert "reported no reason" in failure_reason(None)


def test_a_real_run_reports_steps_and_epochs(tmp_path, parent, cli):
    job = job_folder(tmp_path / "job")
    config = job / "train.json"
    config.write_text(json.dumps(train_config(job, parent, PARAMS, [], threads=1, device="cpu")))
    code, _, err = cli(["train", "--config", config])
    assert code == 0, err
    events = lines(job / "run" / "progress.jsonl")
    assert [(e["event"], e["epoch"], e["step"]) for e in events] == [("step", 1, 1), ("epoch", 1, 2), ("step", 2, 1), ("epoch", 2, 2)]
    assert all(e["epochs"] == 2 and e["steps"] == 2 and e["loss"] > 0 and e["samples_per_s"] > 0 for e in events)
    assert progress_of(events[-1])[0] == 1.0


def test_a_user_error_is_the_last_line(tmp_path, parent, cli):
    job = tmp_path / "job"
    (job / "data" / "train" / "images").mkdir(parents=True)  # no images at all
    (job / "data" / "train" / "masks").mkdir()
    config = job / "train.json"
    config.write_text(json.dumps(train_config(job, parent, PARAMS, [], threads=1, device="cpu")))
    code, _, err = cli(["train", "--config", config])
    assert code == 2
    event = last_event(job / "run" / "progress.jsonl")
    assert event["event"] == "error" and event["user_error"] is True
    assert event["message"] and event["message"] in err  # the same message the terminal shows


def test_children_start_from_any_folder(tmp_path):
    """A `landsentry/` folder in the child's working directory must not shadow the installed package."""
    decoy = tmp_path / "landsentry"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy was imported')\n")
    (decoy / "__main__.py").write_text("raise SystemExit('the decoy ran')\n")
    for module in ("landsentry", "landsentry.api.worker"):
        done = subprocess.run(python_module(module, "--help"), cwd=tmp_path, env=child_env(1), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "decoy" not in done.stderr, done.stderr


def test_children_do_not_get_the_token(monkeypatch):
    monkeypatch.setenv("LANDSENTRY_TOKEN", "s3cret")
    monkeypatch.setenv("LANDSENTRY_MAX_PIXELS", "123")
    env = child_env(2)
    assert "LANDSENTRY_TOKEN" not in env and env["LANDSENTRY_MAX_PIXELS"] == "123" and env["OMP_NUM_THREADS"] == "2"


def test_a_failed_run_fails_the_job_with_its_own_reason(tmp_path, parent):
    """Through the worker's path: the child exits non-zero, and the job's error is the line it reported."""
    import shutil
    import threading

    from landsentry.api.settings import Settings
    from landsentry.api.store import Store
    from landsentry.api.train_job import run_train_job

    store = Store(tmp_path / "data")
    shutil.copy(parent, store.models_dir / "m_1.pt")
    store.add_model("m_1", "parent", None, "m_1.pt", {}, {})
    job = store.create_job("j_abc", "train", {**PARAMS, "replay": []}, status="running")
    for sub in ("images", "masks"):
        (store.job_dir("j_abc") / "data" / "train" / sub).mkdir(parents=True)  # the snapshot lost its images
    run_train_job(store, Settings.from_env(data_dir=tmp_path / "data", worker=False), job, threading.Event())
    failed = store.get_job("j_abc")
    reported = last_event(store.job_dir("j_abc") / "run" / "progress.jsonl")
    assert failed["status"] == "failed" and reported["event"] == "error"
    assert failed["error"] == f"training failed (exit 2): {reported['message']}" and "no samples found" in failed["error"]
