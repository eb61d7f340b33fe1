"""`landsentry export --onnx`: the file runs in ONNX Runtime and gives eager PyTorch's logits; bad input exits 2."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from landsentry.models.inference.backends import InferenceHead
from landsentry.models.nn.checkpoint import load_checkpoint

ort = pytest.importorskip("onnxruntime")


def test_export_matches_eager_on_any_window_size(tiny_checkpoint, tmp_path, cli):
    out = tmp_path / "tiny.onnx"
    code, stdout, stderr = cli(["export", "--onnx", "--checkpoint", tiny_checkpoint, "-o", out])
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["check_class_agreement"] == 1.0 and report["check_max_abs_logit_diff"] < 1e-4
    ckpt = load_checkpoint(tiny_checkpoint)
    head = InferenceHead(ckpt.build_model(), ckpt.mean, ckpt.std).eval()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 96, 160)).astype(np.float32)  # another batch and size than exported
    with torch.inference_mode():
        ref = head(torch.from_numpy(x)).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert got.shape == (2, 6, 96, 160)
    assert np.abs(ref - got).max() < 1e-4


def test_export_int8(tiny_checkpoint, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("LANDSENTRY_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "tiny-int8.onnx"
    code, stdout, stderr = cli(["export", "--onnx", "--int8", "--checkpoint", tiny_checkpoint, "-o", out])
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["int8"] is True
    assert out.read_bytes() == next((tmp_path / "cache").glob("int8-*.onnx")).read_bytes()  # cached for the backend
    assert report["check_class_agreement"] > 0.8  # a random tiny network's classes are fragile; the bundled model's are tested in test_backends


@pytest.mark.parametrize("args, message", [
    (["--calibrate", "x.tif"], "--calibrate only applies with --int8"),
    (["--checkpoint", "missing.pt"], "checkpoint not found"),
])
def test_export_bad_input(tmp_path, cli, args, message):
    code, _, stderr = cli(["export", "--onnx", "-o", tmp_path / "m.onnx", *args])
    assert code == 2 and message in stderr and "Traceback" not in stderr


def test_export_into_a_folder_is_refused(tmp_path, cli, tiny_checkpoint):
    code, _, stderr = cli(["export", "--onnx", "--checkpoint", tiny_checkpoint, "-o", tmp_path])
    assert code == 2 and "is a folder" in stderr
