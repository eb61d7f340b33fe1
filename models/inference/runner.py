"""One window runner for every network: batched overlapping windows, blended, streamed in strips.

`WindowRunner` pads each batch to a multiple of 32, runs the network through an inference backend
(`models.inference.backends`: ONNX Runtime by default where installed, else eager PyTorch) and
blends the windows (`models.inference.tiling`). The segmentation model (`Predictor`: one image in,
class probabilities out) and the learned change model (`ChangeRunner`: two dates in, a change
probability out) are the same runner with a different number of inputs and a different activation.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Iterator

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn
from torch.nn import functional as F

from landsentry.models.inference.backends import build_runner, resolve_backend
from landsentry.models.inference.device import default_batch_size, default_precision, resolve_device
from landsentry.models.inference.resolution import check_zoom, resample_range, working_gsd as working_gsd_of, zoom_for
from landsentry.models.inference.tiling import Strip, StripStitcher, default_overlap, stitch_windows
from landsentry.models.inference.timing import NO_TIMER, Timer
from landsentry.models.io.fill import fill_invalid
from landsentry.models.io.raster import ArraySource
from landsentry.models.nn.change_net import SiameseChangeNet
from landsentry.models.nn.checkpoint import Checkpoint
from landsentry.models.nn.encoder import IMAGENET_MEAN, IMAGENET_STD

ProgressFn = Callable[[int, int], None]  # (windows done, windows total)


class WindowRunner:
    """A network run over the window grid of one or more aligned sources (anything with `.info` and `.read`)."""

    inputs = 1
    stage = "model"  # the timer's name for this network's calls
    zoom = 1.0  # the default resampling factor of every window (ChangeRunner: its checkpoint's)

    def __init__(self, model: nn.Module, mean, std, device: str = "auto", tile: int = 512, overlap: int | None = None,
                 batch_size: int | None = None, backend: str = "auto", precision: str = "auto", threads: int | None = None,
                 live_model: bool = False, tta: bool = False) -> None:
        """`backend` is one of models.inference.backends.BACKENDS ('auto': ONNX Runtime when installed, else
        eager; always eager for a `live_model` that training changes between calls). `precision` 'auto'
        is float32 on the CPU and bfloat16 (float16 where the GPU lacks it) autocast on CUDA for the
        eager/compile backends. `threads` sets ONNX Runtime's threads (default: torch's). `tta` averages
        the probabilities of the window and its three mirror images (test-time augmentation: 4x the
        model time; `landsentry bench --tta` measures it, `landsentry evaluate --tta` its gain)."""
        if tile < 64 or tile % 32:
            raise ValueError("tile must be a multiple of 32, at least 64")
        overlap = default_overlap(tile) if overlap is None else overlap
        if not 0 <= overlap < tile // 2:
            raise ValueError("overlap must be in [0, tile/2)")
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.tile, self.overlap = tile, overlap
        self.batch_size = batch_size or default_batch_size(self.device)
        if precision == "auto":
            precision = default_precision(self.device) if backend in ("auto", "eager", "compile") else "float32"
        if backend == "auto" and precision != "float32":  # half precision is an eager/compile feature
            backend = "eager"
        self.backend = resolve_backend(backend, self.device, live_model=live_model)
        self.precision = precision
        self.in_channels = len(tuple(mean))
        self.tta = tta
        self._run = build_runner(self.model, mean, std, self.device, self.backend, precision, threads, inputs=self.inputs)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict_batch(self, *batches: np.ndarray, zoom: float | None = None) -> np.ndarray:
        """One N x C x h x w float32 batch (0..255) per input -> N x K x h x w probabilities.

        `zoom` (default `self.zoom`) resamples the batch by that factor before the network and the
        probabilities back to h x w, so the network sees objects at its working resolution while the
        outputs stay on the input's grid (`models.inference.resolution`)."""
        zoom = check_zoom(self.zoom if zoom is None else zoom)
        if zoom == 1.0:
            return self._predict_native(*batches)
        h, w = batches[0].shape[-2:]
        size = (max(32, round(h * zoom)), max(32, round(w * zoom)))
        zoomed = [F.interpolate(torch.from_numpy(np.ascontiguousarray(b, np.float32)), size=size, mode="bilinear",
                                align_corners=False, antialias=zoom < 1).numpy() for b in batches]
        probs = torch.from_numpy(self._predict_native(*zoomed))
        return F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False, antialias=zoom > 1).numpy()

    @torch.inference_mode()
    def _predict_native(self, *batches: np.ndarray) -> np.ndarray:
        x = [torch.from_numpy(np.ascontiguousarray(b[:, : self.in_channels])).to(self.device, torch.float32) for b in batches]
        h, w = x[0].shape[-2:]
        pad_h, pad_w = (-h) % 32, (-w) % 32
        if pad_h or pad_w:  # the encoder needs sizes divisible by 32; reflect keeps edges natural
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = [F.pad(t, (0, pad_w, 0, pad_h), mode=mode) for t in x]
        if not self.tta:
            logits = self._run(*x)[..., :h, :w]  # normalise + network (models.inference.backends.InferenceHead)
            return self.activate(logits.float()).cpu().numpy()
        total = None
        for dims in ((), (-1,), (-2,), (-2, -1)):  # the identity and the three mirror images, undone after the network
            flipped = [t.flip(dims) if dims else t for t in x]
            probs = self.activate(self._run(*flipped).float())
            probs = probs.flip(dims) if dims else probs
            total = probs if total is None else total + probs
        return (total[..., :h, :w] / 4).cpu().numpy()

    def iter_strips(self, *sources, progress: ProgressFn | None = None, timer: Timer = NO_TIMER,
                    zoom: float | None = None) -> Iterator[Strip]:
        """Blended probabilities of the whole grid, top to bottom, in finished strips (valid: all sources valid).
        Invalid pixels (nodata, masks, alpha, NaN) of each source are filled from their valid neighbours
        before the network sees them (`models.io.fill`); their results are marked invalid all the same.
        `zoom`: as in `predict_batch` (windows stay `tile` input pixels; the network sees tile * zoom)."""
        zoom = check_zoom(self.zoom if zoom is None else zoom)
        info = sources[0].info
        stitcher = StripStitcher(info.height, info.width, self.outputs, self.tile, self.overlap)

        def read(y: int) -> tuple[list[np.ndarray], np.ndarray]:
            bands, valid = [], np.ones((stitcher.tile_h, info.width), bool)
            for source in sources:
                band, ok = source.read(Window(0, y, info.width, stitcher.tile_h))
                bands.append(fill_invalid(band, ok))
                valid &= ok
            return bands, valid

        predict = self.predict_batch if zoom == 1.0 else partial(self.predict_batch, zoom=zoom)
        strips = stitch_windows(stitcher, read, predict, self.batch_size, progress, timer, self.stage)
        yield from timer.timed_iter("tiles", strips)

    @property
    def outputs(self) -> int:
        raise NotImplementedError


class Predictor(WindowRunner):
    """Class probabilities (softmax) for arrays and rasters from one loaded segmentation checkpoint."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto", tile: int = 512, overlap: int | None = None,
                 batch_size: int | None = None, model: nn.Module | None = None, backend: str = "auto",
                 precision: str = "auto", threads: int | None = None, tta: bool = False, working_gsd: float | None = None) -> None:
        """`model` overrides the checkpoint's weights (training evaluates its live model this way).
        `working_gsd`: metres per pixel inputs of known ground size are resampled to (default: the
        checkpoint's `metadata["gsd"]`; 0: never resample; `models.inference.resolution`)."""
        self.checkpoint = checkpoint
        self.working_gsd = working_gsd_of(checkpoint.metadata) if working_gsd is None else (float(working_gsd) or None)
        self.resample_range = resample_range(checkpoint.metadata) if working_gsd is None else None  # an explicit one applies to all
        self.num_classes = checkpoint.num_classes
        network = model if model is not None else checkpoint.build_model()
        super().__init__(network, checkpoint.mean, checkpoint.std, device, tile, overlap, batch_size, backend, precision,
                         threads, live_model=model is not None, tta=tta)

    @property
    def outputs(self) -> int:
        return self.num_classes

    def zoom_for(self, input_gsd: float | None) -> float:
        """The factor windows of an input of `input_gsd` m per pixel are resampled by (`models.inference.resolution`)."""
        return zoom_for(input_gsd, self.working_gsd, self.resample_range)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1)

    def predict_array(self, image: np.ndarray, valid: np.ndarray | None = None, zoom: float | None = None) -> np.ndarray:
        """Probabilities (K x H x W) for a C x H x W image already in memory, with the same tiling."""
        strips = list(self.iter_strips(ArraySource(image, valid), zoom=zoom))
        return np.concatenate([s.probs for s in strips], axis=1)


class ChangeRunner(WindowRunner):
    """Change probabilities (sigmoid) of two aligned dates, with the predictor's windows and blending."""

    inputs = 2
    stage = "change_model"

    def __init__(self, model: SiameseChangeNet, checkpoint: Checkpoint | None = None, device: str = "auto",
                 tile: int = 512, overlap: int | None = None, batch_size: int | None = None, backend: str = "auto",
                 threads: int | None = None, zoom: float | None = None) -> None:
        """`zoom` resamples each window by that factor before the network and the probabilities back
        (default: the checkpoint's `metadata["zoom"]`, else 1): the frozen ImageNet features separate
        objects better when they are larger, at zoom² the cost."""
        self.checkpoint = checkpoint
        zoom = check_zoom(float(zoom if zoom is not None else (checkpoint.metadata.get("zoom", 1.0) if checkpoint else 1.0)))
        channels = model.encoder.stem[0].in_channels
        mean = tuple(checkpoint.mean) if checkpoint else IMAGENET_MEAN[:channels]
        std = tuple(checkpoint.std) if checkpoint else IMAGENET_STD[:channels]
        super().__init__(model.eval(), mean, std, device, tile, overlap, batch_size, backend, "auto", threads)
        self.zoom = zoom

    @property
    def outputs(self) -> int:
        return 1

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


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
