"""Run a checkpoint over images of any size: batched overlapping windows, blended, streamed in strips.

The network itself runs on an inference backend (`models.backends`: ONNX Runtime by default where
installed, else eager PyTorch); every backend gives the same classes (tests/test_backends.py).
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
from torch.nn import functional as F
from rasterio.windows import Window

from landsentry.models.inference.backends import build_runner, resolve_backend
from landsentry.models.nn.checkpoint import Checkpoint
from landsentry.models.io.raster import RasterSource
from landsentry.models.inference.tiling import Strip, StripStitcher, default_overlap, stitch_windows

ProgressFn = Callable[[int, int], None]  # (windows done, windows total)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when present; an explicit device that is not available is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        from landsentry.models.vocabulary.errors import InputError

        raise InputError("device 'cuda' requested but no CUDA GPU is available to this torch build")
    return torch.device(device)


def default_batch_size(device: torch.device) -> int:
    """Windows per model call: 1 on the CPU (larger batches only add memory traffic there), 8 on CUDA."""
    return 8 if device.type == "cuda" else 1


def default_precision(device: torch.device) -> str:
    """float32 on the CPU; on CUDA, bfloat16 where the GPU has it (same range as float32), else float16."""
    if device.type != "cuda":
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


class Predictor:
    """Class probabilities for arrays and rasters from one loaded checkpoint."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: str = "auto",
        tile: int = 512,
        overlap: int | None = None,
        batch_size: int | None = None,
        model: torch.nn.Module | None = None,
        backend: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
    ) -> None:
        """`model` overrides the checkpoint's weights (training evaluates its live model this way).

        `backend` is one of models.backends.BACKENDS ('auto': ONNX Runtime when installed, else eager;
        always eager for a live `model`). `precision` 'auto' is float32 on the CPU and, on CUDA,
        bfloat16 (float16 where the GPU lacks it) autocast for the eager/compile backends.
        `batch_size` defaults to 1 window per call on the CPU (larger batches only add memory
        traffic there) and 8 on CUDA. `threads` sets ONNX Runtime's threads (default: torch's).
        """
        if tile < 64 or tile % 32:
            raise ValueError("tile must be a multiple of 32, at least 64")
        overlap = default_overlap(tile) if overlap is None else overlap
        if not 0 <= overlap < tile // 2:
            raise ValueError("overlap must be in [0, tile/2)")
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.model = (model if model is not None else checkpoint.build_model()).to(self.device)
        self.tile, self.overlap = tile, overlap
        self.batch_size = batch_size or default_batch_size(self.device)
        self.num_classes = checkpoint.num_classes
        if precision == "auto":
            precision = default_precision(self.device) if backend in ("auto", "eager", "compile") else "float32"
        if backend == "auto" and precision != "float32":  # half precision is an eager/compile feature
            backend = "eager"
        self.backend = resolve_backend(backend, self.device, live_model=model is not None)
        self.precision = precision
        self._runner = build_runner(self.model, checkpoint.mean, checkpoint.std, self.device, self.backend, precision, threads)

    @torch.inference_mode()
    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """N x C x h x w float32 in 0..255 -> N x K x h x w softmax probabilities."""
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, torch.float32)
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % 32, (-w) % 32
        if pad_h or pad_w:  # the encoder needs sizes divisible by 32; reflect keeps edges natural
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        logits = self._runner(x)[..., :h, :w]  # normalise + network (models.backends.InferenceHead)
        return logits.float().softmax(dim=1).cpu().numpy()

    def iter_strips(self, source: RasterSource, progress: ProgressFn | None = None) -> Iterator[Strip]:
        """Blended probabilities of the whole raster, top to bottom, in finished strips."""
        info = source.info
        stitcher = StripStitcher(info.height, info.width, self.num_classes, self.tile, self.overlap)

        def read(y: int) -> tuple[list[np.ndarray], np.ndarray]:
            band, valid = source.read(Window(0, y, info.width, stitcher.tile_h))
            return [band], valid

        yield from stitch_windows(stitcher, read, self.predict_batch, self.batch_size, progress)

    def predict_array(self, image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (K x H x W) for a C x H x W image already in memory, with the same tiling."""
        from landsentry.models.io.raster import ArraySource

        strips = list(self.iter_strips(ArraySource(image, valid)))
        return np.concatenate([s.probs for s in strips], axis=1)


def classes_and_confidence(strip: Strip, nodata: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """uint8 class ids (nodata where invalid) and uint8 confidence in percent (0 where invalid)."""
    probs = torch.from_numpy(strip.probs)
    h, w = strip.valid.shape
    classes, confidence = np.empty((h, w), np.uint8), np.empty((h, w), np.uint8)
    for x in range(0, w, 4096):  # column chunks keep torch's int64 indices small on wide scenes
        best, index = probs[:, :, x : x + 4096].max(dim=0)  # one pass, all cores (numpy: two, on one)
        classes[:, x : x + 4096] = index.numpy()
        confidence[:, x : x + 4096] = best.mul_(100).round_().numpy()
    classes[~strip.valid] = nodata
    confidence[~strip.valid] = 0
    return classes, confidence
