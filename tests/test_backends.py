"""Inference backends (models.inference.backends): every fast path gives eager PyTorch's classes.

Tolerances (stated in the README's performance section):
- `onnx` (float32): the same probabilities within 1e-4 and >= 99.9 % of pixels the same class;
- `onnx-int8`: >= 98 % of pixels the same class on real imagery, on average over the images (measured
  98.6 % on each of the two 960² crops below: a Dubai tile-8 image and a LoveDA rural image);
- `compile`: the same probabilities within 1e-4 (compiling takes about a minute on 2 cores).
Unit-level images are generated here (smooth random fields, `_field`); real ones come from ../shared/data.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import require_shared
from landsentry.models.inference import backends
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.errors import InputError
from landsentry.models.inference.runner import Predictor

pytest.importorskip("onnxruntime")


def _field(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A 3 x H x W image in 0..255: smooth blobs plus noise, so a random network gives varied classes."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bands = [127 + 80 * np.sin(xx / rng.uniform(7, 23) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(7, 23)) for _ in range(3)]
    image = np.stack(bands) + rng.normal(0, 12, (3, h, w))
    return np.clip(image, 0, 255).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


def test_onnx_matches_eager_on_odd_sizes_and_batches(tiny):
    """Dynamic batch, height and width: edge windows smaller than the tile and padded sizes agree too."""
    image = _field((150, 230))
    eager = Predictor(tiny, device="cpu", backend="eager", tile=128, overlap=16, batch_size=3)
    onnx = Predictor(tiny, device="cpu", backend="onnx", tile=128, overlap=16, batch_size=2)
    assert (eager.backend, onnx.backend) == ("eager", "onnx")
    a, b = eager.predict_array(image), onnx.predict_array(image)
    assert np.abs(a - b).max() < 1e-4
    assert (a.argmax(0) == b.argmax(0)).mean() >= 0.999
    assert len(np.unique(a.argmax(0))) > 1  # the fixture really exercises several classes
    small = _field((70, 90), seed=1)  # smaller than one tile: the window is the image, padded to 96 x 96
    assert np.abs(eager.predict_array(small) - onnx.predict_array(small)).max() < 1e-4


def test_the_change_model_runs_on_onnx_like_eager(shared_file):
    """The learned change model goes through the same runner and backends: ONNX (two inputs) gives eager's probabilities."""
    from landsentry.models.analysis.inputs import open_inputs
    from landsentry.models.inference.runner import ChangeRunner
    from landsentry.models.nn.change_net import load_change_model

    model, ckpt = load_change_model()
    before, after = shared_file("levir_cd/test/A/test_2_0000_0000.png"), shared_file("levir_cd/test/B/test_2_0000_0000.png")
    probs = {}
    for backend in ("eager", "onnx"):
        runner = ChangeRunner(model, ckpt, device="cpu", tile=128, overlap=16, backend=backend)
        assert runner.backend == backend
        with open_inputs(after, before) as inputs:
            probs[backend] = np.concatenate([s.probs for s in runner.iter_strips(inputs.before, inputs.after)], axis=1)
    assert probs["eager"].shape == (1, 256, 256)
    assert np.abs(probs["eager"] - probs["onnx"]).max() < 1e-4
    assert ChangeRunner(model, ckpt, device="cpu", tile=128).backend == "onnx"  # auto: the fast path, as for segmentation


def test_auto_picks_onnx_and_falls_back_to_eager(tiny, monkeypatch):
    assert Predictor(tiny, device="cpu", tile=128, overlap=16).backend == "onnx"
    monkeypatch.setattr(backends, "onnxruntime_available", lambda: False)
    assert Predictor(tiny, device="cpu", tile=128, overlap=16).backend == "eager"
    with pytest.raises(InputError, match="needs onnxruntime"):
        Predictor(tiny, device="cpu", backend="onnx")


def test_live_model_stays_eager_untouched(tiny):
    """Training hands in its live model: auto must run it eagerly, in its mode, without moving it."""
    model = tiny.build_model().train()
    predictor = Predictor(tiny, device="cpu", tile=128, overlap=16, model=model)
    assert predictor.backend == "eager"
    assert model.training
    Predictor(tiny, device="cpu", backend="onnx", tile=128, overlap=16, model=model)  # export works on a copy
    assert model.training and next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "tensorrt"}, "unknown backend"),
    ({"backend": "eager", "precision": "float8"}, "unknown precision"),
    ({"backend": "onnx", "precision": "float16"}, "precision float16"),
])
def test_bad_backend_settings_are_input_errors(tiny, kwargs, message):
    with pytest.raises(InputError, match=message):
        Predictor(tiny, device="cpu", **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_gpu_is_an_input_error(tiny):
    with pytest.raises(InputError, match="no CUDA"):
        Predictor(tiny, device="cuda", backend="onnx")


def test_compile_matches_eager(tiny):
    """torch.compile (inductor, C++ kernels built with the machine's compiler): about a minute here."""
    image = _field((128, 128))
    a = Predictor(tiny, device="cpu", backend="eager", tile=128, overlap=0).predict_array(image)
    b = Predictor(tiny, device="cpu", backend="compile", tile=128, overlap=0).predict_array(image)
    assert np.abs(a - b).max() < 1e-4


def _real_crops() -> list[np.ndarray]:
    crops = []
    for rel in ("dubai_aerial/images/image_part_004t8.jpg", "loveda/Val/Rural/images_png/0.png"):
        with Image.open(require_shared(rel)) as img:
            array = np.asarray(img.convert("RGB")).transpose(2, 0, 1).astype(np.float32)
        crops.append(np.ascontiguousarray(array[:, :960, :960]))
    return crops


def test_bundled_model_same_classes_on_real_imagery(tmp_path, monkeypatch):
    """The bundled model on real Dubai and LoveDA crops: float32 ONNX equals eager, int8 stays within tolerance."""
    monkeypatch.setenv("LANDSENTRY_CACHE_DIR", str(tmp_path))  # the int8 graph is cached here, not in ~/.cache
    checkpoint = load_checkpoint()
    crops = _real_crops()
    eager = Predictor(checkpoint, device="cpu", backend="eager", batch_size=1)
    onnx = Predictor(checkpoint, device="cpu", backend="onnx", batch_size=1)
    int8 = Predictor(checkpoint, device="cpu", backend="onnx-int8", batch_size=1)
    agreement = []
    for crop in crops:
        ref = eager.predict_array(crop)
        fast = onnx.predict_array(crop)
        assert np.abs(ref - fast).max() < 1e-3
        assert (ref.argmax(0) == fast.argmax(0)).mean() >= 0.999
        agreement.append((ref.argmax(0) == int8.predict_array(crop).argmax(0)).mean())
    assert np.mean(agreement) >= 0.98, agreement
    assert list(tmp_path.glob("int8-*.onnx")), "the quantised graph is cached for the next load"


def test_auto_on_cuda_needs_the_ort_cuda_provider(monkeypatch):
    """A CPU-only onnxruntime on a GPU machine would silently run on the CPU: auto must pick eager there."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(backends, "_ort_providers", lambda: ["CPUExecutionProvider"])
    assert backends.resolve_backend("auto", cuda) == "eager"
    with pytest.raises(InputError, match="onnxruntime-gpu"):
        backends.resolve_backend("onnx", cuda)
    monkeypatch.setattr(backends, "_ort_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert backends.resolve_backend("auto", cuda) == "onnx"
    with pytest.raises(InputError, match="CPU only"):
        backends.resolve_backend("onnx-int8", cuda)


def test_cpu_defaults_and_bfloat16_autocast(tiny):
    """auto on the CPU: float32, one window per call; bfloat16 autocast (CUDA's default) stays close to float32."""
    default = Predictor(tiny, device="cpu", tile=128, overlap=16)
    assert (default.precision, default.batch_size) == ("float32", 1)
    image = _field((128, 192), seed=3)
    ref = Predictor(tiny, device="cpu", backend="eager", tile=128, overlap=16).predict_array(image)
    half = Predictor(tiny, device="cpu", backend="eager", precision="bfloat16", tile=128, overlap=16)
    assert half.precision == "bfloat16"
    got = half.predict_array(image)
    assert got.dtype == np.float32 and np.allclose(got.sum(0), 1, atol=1e-4)
    assert np.abs(ref - got).max() < 0.1  # bfloat16 keeps 8 bits of mantissa
    assert (ref.argmax(0) == got.argmax(0)).mean() >= 0.95
    assert Predictor(tiny, device="cpu", precision="bfloat16", tile=128, overlap=16).backend == "eager"


def test_predict_cli_backends_write_the_same_classes(cli, tmp_path, tiny_checkpoint):
    import rasterio

    image = tmp_path / "field.png"
    Image.fromarray(_field((200, 260), seed=5).transpose(1, 2, 0).astype(np.uint8)).save(image)
    classes = {}
    for backend in ("eager", "onnx"):
        code, _, err = cli(["predict", str(image), "-o", str(tmp_path / backend), "--checkpoint", str(tiny_checkpoint),
                            "--backend", backend, "--tile", "128", "--overlap", "16", "--quiet"])
        assert code == 0, err
        with rasterio.open(tmp_path / backend / "classes.tif") as ds:
            classes[backend] = ds.read(1)
    assert (classes["eager"] == classes["onnx"]).mean() >= 0.999
    code, _, err = cli(["predict", str(image), "-o", str(tmp_path / "bad"), "--backend", "tensorrt"])
    assert code == 2 and "unknown backend" in err and "Traceback" not in err
