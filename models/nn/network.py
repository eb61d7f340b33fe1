"""Segmentation network: EfficientNet-Lite encoder -> decoder -> 1x1 head.

Shaped like segmentation_models_pytorch (encoder, decoder, segmentation_head) so the parts read
the same way; `build_model` is the one constructor, and its arguments are what a checkpoint stores.

Two decoders (the architecture name picks one):
- `lightunet_lite0` (the default): top-down additions of 1x1 projections and one separable 3x3
  per scale, 4.2 GFLOPs per 512² tile; the encoder is then about 70 % of the time;
- `unet_lite0`: the classic UNet decoder (upsample, concatenate, two full 3x3 convs per scale),
  8.6 GFLOPs, about 1.5x slower on a CPU for no better accuracy (README, Performance);
- `lightunet_lite1`, `lightunet_lite2`: the light decoder on the deeper (and, Lite2, wider) encoders,
  for the encoder comparison (README, Training).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from landsentry.models.nn.encoder import EfficientNetLiteEncoder, load_imagenet_weights

ARCHITECTURES = ("lightunet_lite0", "unet_lite0", "lightunet_lite1", "lightunet_lite2")
DEFAULT_ARCHITECTURE = "lightunet_lite0"
DEFAULT_DECODER_CHANNELS: tuple[int, ...] = (128, 64, 32, 16)


class DecoderBlock(nn.Module):
    """Upsample x2, join the skip connection, two 3x3 conv-BN-ReLU."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(cin + skip, cout, 3)
        self.conv2 = _conv_bn_relu(cout, cout, 3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


def _conv_bn_relu(cin: int, cout: int, kernel: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LightDecoderBlock(nn.Module):
    """Project the coarse map to `cout` (1x1, at the coarse size), upsample x2, add a 1x1 projection
    of the skip, refine with a separable 3x3 (depthwise, then pointwise).

    Adding instead of concatenating, and projecting before upsampling, keep the wide tensors at the
    coarse scale: on a CPU the decoder's cost is memory traffic at the fine scales, not arithmetic.
    """

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.top = _conv_bn_relu(cin, cout, 1)
        self.lateral = _conv_bn_relu(skip, cout, 1) if skip else None
        self.depthwise = _conv_bn_relu(cout, cout, 3, groups=cout)
        self.pointwise = _conv_bn_relu(cout, cout, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(self.top(x), size=size, mode="nearest")
        if skip is not None and self.lateral is not None:
            x = x + self.lateral(skip)
        return self.pointwise(self.depthwise(x))


class UnetDecoder(nn.Module):
    """From the deepest feature up through the skips; one block per decoder channel entry.

    With four entries the decoder stops at stride 2 and the head's logits are upsampled
    bilinearly: the stride-1 stage of a classic UNet costs a third of the FLOPs for little gain
    at 0.3-1 m ground resolution.
    """

    def __init__(self, encoder_channels: tuple[int, ...], decoder_channels: tuple[int, ...], block: type[nn.Module] = DecoderBlock) -> None:
        super().__init__()
        skips = list(reversed(encoder_channels[:-1])) + [0] * len(decoder_channels)
        cin = encoder_channels[-1]
        blocks = []
        for i, cout in enumerate(decoder_channels):
            blocks.append(block(cin, skips[i], cout))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = cin
        self.output_stride = 2 ** (len(encoder_channels) - len(decoder_channels))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        skips = list(reversed(features[:-1]))
        x = features[-1]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        return x


class SegmentationModel(nn.Module):
    """encoder -> decoder -> segmentation_head; logits at input resolution."""

    def __init__(self, in_channels: int, num_classes: int, decoder_channels: tuple[int, ...], light: bool = True,
                 encoder: str = "lite0") -> None:
        super().__init__()
        self.encoder = EfficientNetLiteEncoder(in_channels, encoder)
        block = LightDecoderBlock if light else DecoderBlock
        self.decoder = UnetDecoder(self.encoder.out_channels, tuple(decoder_channels), block)
        self.segmentation_head = nn.Conv2d(self.decoder.out_channels, num_classes, 1)

    def forward(self, x: torch.Tensor, full_size: bool = True) -> torch.Tensor:
        """Logits at the input's size; `full_size=False` keeps the decoder's stride (training's light loss path)."""
        logits = self.segmentation_head(self.decoder(self.encoder(x)))
        if full_size and logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


def build_model(
    name: str = DEFAULT_ARCHITECTURE,
    in_channels: int = 3,
    num_classes: int = 6,
    decoder_channels: tuple[int, ...] | list[int] = DEFAULT_DECODER_CHANNELS,
    pretrained: bool = False,
) -> SegmentationModel:
    """The one model constructor. `pretrained` loads ImageNet weights into the encoder, offline."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    decoder, encoder = name.split("_")
    model = SegmentationModel(in_channels, num_classes, tuple(decoder_channels), light=decoder == "lightunet", encoder=encoder)
    initialize(model)
    if pretrained:
        load_imagenet_weights(model.encoder, prefix="encoder.")
    return model


def initialize(model: nn.Module) -> None:
    """torchvision's EfficientNet initialisation (Kaiming fan-out convs, unit BN, zero biases).

    PyTorch's default conv init shrinks activations block by block in a deep random Lite0, so a
    model trained from random weights would start from an almost constant output.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def count_flops(model: nn.Module, in_channels: int, size: int = 512) -> int:
    """FLOPs of one forward pass on a size x size tile (torch.utils.flop_counter: 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_channels, size, size))
    model.train(was_training)
    return int(counter.get_total_flops())
