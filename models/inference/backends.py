"""Inference backends: one contract, several engines, the same classes.

Every backend runs `InferenceHead` (normalise -> network) on one N x C x H x W float32 batch of
windows in 0..255 per network input (one for segmentation, two dates for the change model), sides
multiples of 32, and returns N x K x H x W logits as a torch tensor.
Normalisation lives inside the head, so ONNX Runtime fuses it into the network. The softmax does
not: ONNX Runtime's Softmax over the channel axis of an NCHW tensor costs as much as the whole
network (measured: 46 ms -> 96 ms per 512² window), PyTorch's takes about 2 ms.

- `eager`: plain PyTorch (float32; float16/bfloat16 autocast with `precision`, the default on CUDA;
  on a CPU only worth it where it has bfloat16 units, but it runs everywhere, which the tests use).
- `compile`: torch.compile of the same head (compiles on first use of each window shape).
- `onnx`: ONNX Runtime, float32, graph built in memory at load (about a second for Lite0);
  CPU provider, or the CUDA provider when the installed onnxruntime has it.
- `onnx-int8`: ONNX Runtime with int8 weights and activations (static QDQ quantisation,
  calibrated on real imagery; the first stage stays float32); opt-in, because its classes differ
  from float32 on about 1.5 % of pixels (measured in tests/test_backends.py).

`auto` picks `onnx` where onnxruntime is installed (on CUDA: with its CUDA provider) and `eager`
otherwise (and always `eager` for a live model handed in by training, which changes between calls).
"""
from __future__ import annotations

import copy
import hashlib
import io
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from landsentry.models.vocabulary.atomic import write_atomic
from landsentry.models.nn.normalization import Normalize
from landsentry.models.vocabulary.errors import InputError

BACKENDS = ("auto", "eager", "compile", "onnx", "onnx-int8")
PRECISIONS = ("float32", "float16", "bfloat16")
ONNX_OPSET = 17
CALIBRATION_IMAGE = Path(__file__).resolve().parents[2] / "sample_tiles" / "spacenet_atlanta_pan.tif"
"""Real imagery the int8 backend calibrates on when no other images are given (shipped with the repo)."""

Runner = Callable[[torch.Tensor], torch.Tensor]


class InferenceHead(nn.Module):
    """0..255 input(s) -> normalised -> network -> logits: what every backend runs."""

    def __init__(self, model: nn.Module, mean: Iterable[float], std: Iterable[float], inputs: int = 1) -> None:
        super().__init__()
        self.model = model
        self.normalize = Normalize(mean, std)
        self.inputs = inputs

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        return self.model(*(self.normalize(x) for x in images))


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device, live_model: bool = False) -> str:
    """The concrete backend for a request; unknown or unusable ones are an InputError (exit 2)."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":  # on CUDA, ONNX Runtime only when it has its CUDA provider (onnxruntime-gpu)
        usable = onnxruntime_available() and (device.type == "cpu" or "CUDAExecutionProvider" in _ort_providers())
        return "onnx" if usable and not live_model else "eager"
    if backend.startswith("onnx"):
        if not onnxruntime_available():
            raise InputError(f"backend {backend!r} needs onnxruntime, which is not installed (pip install 'landsentry[bench]' or onnxruntime)")
        if device.type == "cuda" and "CUDAExecutionProvider" not in _ort_providers():
            raise InputError(f"backend {backend!r} on CUDA needs onnxruntime-gpu (this onnxruntime has {', '.join(_ort_providers())})")
        if backend == "onnx-int8" and device.type != "cpu":
            raise InputError("backend 'onnx-int8' runs on the CPU only; use --device cpu")
    return backend


def _compiled(head: nn.Module) -> nn.Module:
    """torch.compile of the head. Its inductor imports torch.utils.mkldnn, whose classes use torch's own
    deprecated `torch.jit.script_method` (a DeprecationWarning at import, nothing we call): that module
    is imported here first with that one warning silenced, so it is never shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch.jit.script_method` is deprecated", category=DeprecationWarning)
        import torch.utils.mkldnn  # noqa: F401
    return torch.compile(head, dynamic=False)


def build_runner(
    model: nn.Module,
    mean: Iterable[float],
    std: Iterable[float],
    device: torch.device,
    backend: str,
    precision: str = "float32",
    threads: int | None = None,
    calibration: list[np.ndarray] | None = None,
    inputs: int = 1,
) -> Runner:
    """A callable for `backend` (already resolved) that maps 0..255 windows (one batch per input) to logits."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "float32" and backend not in ("eager", "compile"):
        raise InputError(f"precision {precision} is for the eager/compile backends; {backend} runs float32 (or int8: onnx-int8)")
    head = InferenceHead(model, mean, std, inputs).to(device)  # the caller's model, in the mode the caller left it
    if backend == "eager":
        return _torch_runner(head, device, precision)
    if backend == "compile":
        return _torch_runner(_compiled(head), device, precision)
    in_channels = head.normalize.channels
    if backend == "onnx":
        return OnnxRunner(export_onnx(head, in_channels), device, threads)
    if backend == "onnx-int8":
        if inputs != 1:
            raise InputError("backend 'onnx-int8' is calibrated for single-image models; the change model runs 'onnx' or 'eager'")
        return OnnxRunner(quantize_int8(head, in_channels, calibration), device, threads)
    raise InputError(f"unknown backend {backend!r}")


def _torch_runner(head: nn.Module, device: torch.device, precision: str) -> Runner:
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(precision)

    @torch.inference_mode()
    def run(*images: torch.Tensor) -> torch.Tensor:
        if dtype is None:
            return head(*images)
        with torch.autocast(device.type, dtype=dtype):  # half-precision convolutions; the caller's softmax runs in float32
            return head(*images)

    return run


# --- ONNX -----------------------------------------------------------------------------------------
def input_names(inputs: int) -> list[str]:
    """The ONNX graph's input names: `image`, or `before` and `after` for the change model."""
    return ["image"] if inputs == 1 else ["before", "after"][:inputs]


_EXPORT_LOCK = threading.Lock()
"""torch.onnx.export keeps process-wide state (and so does catch_warnings): one export at a time."""


def export_onnx(head: InferenceHead, in_channels: int, path: str | Path | None = None) -> bytes:
    """The head as an ONNX graph (dynamic batch, height and width); written to `path` when given."""
    head = copy.deepcopy(head).cpu().eval()  # the caller's model stays where and as it is
    names = input_names(head.inputs)
    dynamic = {name: {0: "n", 2: "h", 3: "w"} for name in names}
    buffer = io.BytesIO()
    with _EXPORT_LOCK, warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter warns that it is deprecated and that the network's size test is
        # traced as a constant: that test is true for every input size of this architecture
        warnings.simplefilter("ignore")
        torch.onnx.export(
            head, tuple(torch.zeros(1, in_channels, 64, 64) for _ in names), buffer, dynamo=False, opset_version=ONNX_OPSET,
            input_names=names, output_names=["logits"], dynamic_axes={**dynamic, "logits": {0: "n", 2: "h", 3: "w"}},
        )
    data = buffer.getvalue()
    if path is not None:
        write_atomic(Path(path), data)
    return data


def _ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


class OnnxRunner:
    """An ONNX Runtime session with all graph optimisations and no busy-waiting threads.

    Spinning worker threads would keep both cores busy between calls and slow the reading,
    stitching and writing that run in between (and any PyTorch code in the same process).
    """

    def __init__(self, model: bytes | str | Path, device: torch.device, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, options, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.device = device

    def __call__(self, *images: torch.Tensor) -> torch.Tensor:
        feed = {name: x.detach().cpu().numpy() for name, x in zip(self.inputs, images)}
        return torch.from_numpy(self.session.run(None, feed)[0]).to(self.device)


def calibration_windows(in_channels: int, images: list[str | Path] | None = None, size: int = 512, limit: int = 16) -> list[np.ndarray]:
    """Windows (1 x C x size x size, 0..255) of real images for int8 calibration, with their mirror images."""
    from rasterio.windows import Window

    from landsentry.models.io.raster import RasterSource

    paths = [Path(p) for p in images] if images else [CALIBRATION_IMAGE]
    windows: list[np.ndarray] = []
    for path in paths:
        with RasterSource(path, channels=in_channels) as source:
            h, w = source.info.height, source.info.width
            for y in sorted({0, max(0, h - size)}):
                for x in sorted({0, max(0, w - size)}):
                    band, _ = source.read(Window(x, y, min(size, w), min(size, h)))
                    windows += [band[None], band[None, :, :, ::-1].copy()]
    return [np.ascontiguousarray(w, np.float32) for w in windows[:limit]]


def quantize_int8(head: nn.Module, in_channels: int, calibration: list[np.ndarray] | None = None) -> bytes:
    """Static int8 quantisation (QDQ, per-channel weights) of the exported head, cached on disk.

    `reduce_range` (7-bit weights) avoids the int16 saturation of AVX2's u8 x s8 multiply-add
    (ONNX Runtime's quantisation guide); the first stage stays float32 (`INT8_FLOAT_PREFIXES`).

    The cache key is the float32 graph plus the calibration data, so a changed checkpoint or
    calibration set never reuses a stale model. The cache lives in LANDSENTRY_CACHE_DIR
    (default ~/.cache/landsentry), never beside the package, which may be read-only.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    windows = calibration if calibration is not None else calibration_windows(in_channels)
    graph = export_onnx(head, in_channels)
    digest = hashlib.sha256(graph)
    for w in windows:
        digest.update(np.ascontiguousarray(w).tobytes())
    cached = cache_dir() / f"int8-{digest.hexdigest()[:24]}.onnx"
    if cached.is_file():
        return cached.read_bytes()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(windows)

        def get_next(self) -> dict | None:
            w = next(self._it, None)
            return None if w is None else {"image": w}

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out = Path(tmp) / "f32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(graph)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                        nodes_to_exclude=_float_nodes(pre))
        data = out.read_bytes()
    try:
        write_atomic(cached, data)
    except OSError:  # no writable cache: fine, quantise again next time
        pass
    return data


INT8_FLOAT_PREFIXES = ("/model/encoder/stem", "/model/encoder/blocks.0/", "/model/encoder/blocks.1/", "/model/encoder/blocks.2/")
"""Convolutions kept in float32 by `onnx-int8`: the stem and the stride-2 and stride-4 stages, whose
full-resolution activations quantise worst. With the stride-2 stage in int8, 75-86 % of pixels kept
their class on real Dubai and LoveDA crops; with only it in float32, 98.6 % for the first bundled
model but 97.9 % for the current one (trained with those layers frozen); with the stride-4 stage in
float32 too, 98.9 % and 98.8 %. They are about 15 % of the FLOPs."""


def _float_nodes(graph_path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(graph_path)).graph.node if n.op_type == "Conv" and n.name.startswith(INT8_FLOAT_PREFIXES)]


def cache_dir() -> Path:
    return Path(os.environ.get("LANDSENTRY_CACHE_DIR") or Path.home() / ".cache" / "landsentry")
