"""Photometric augmentations: colour jitter, greyscale and blur, drawn independently per image key.

The two dates of a pair get independent draws: two acquisitions never share exposure or atmosphere.
Labels are never touched.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from landsentry.training.augment import Sample, image_keys, rand, uniform

_LUMA = (0.299, 0.587, 0.114)


def each_image(sample: Sample, p: float, fn: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator | None) -> Sample:
    """A copy of `sample` with `fn` applied to each image key with probability `p`, drawn per key (labels untouched)."""
    out = dict(sample)
    for k in image_keys(sample):
        if rand(generator) < p:
            out[k] = fn(sample[k])
    return out


def _luma(x: torch.Tensor) -> torch.Tensor:
    """Luminance (1 x H x W) of the first three bands, or of the single band."""
    if x.shape[0] < 3:
        return x[:1]
    return _LUMA[0] * x[0:1] + _LUMA[1] * x[1:2] + _LUMA[2] * x[2:3]


def _hue_rotate(rgb: torch.Tensor, turns: float) -> torch.Tensor:
    """Rotate hue by `turns` of a full circle in YIQ space (a linear map; exact enough for small shifts)."""
    theta = 2 * math.pi * turns
    c, s = math.cos(theta), math.sin(theta)
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=rgb.dtype)
    rot = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=rgb.dtype)
    matrix = torch.linalg.inv(to_yiq) @ rot @ to_yiq
    return torch.einsum("ij,jhw->ihw", matrix, rgb)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


class ColorJitter:
    """Small random brightness, contrast, saturation and hue changes, drawn independently per image key.

    Brightness and contrast apply to all bands (NIR included); saturation and hue to the first three.
    Factors are drawn from [1 - x, 1 + x] (hue: a shift in [-hue, hue] turns; gamma: an exponent in
    [1 - gamma, 1 + gamma], another sensor's tone curve). Applied with probability `p`.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.02, p: float = 0.8,
                 gamma: float = 0.0) -> None:
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p
        self.gamma = gamma

    def __repr__(self) -> str:
        return f"ColorJitter(b={self.brightness}, c={self.contrast}, s={self.saturation}, h={self.hue}, g={self.gamma}, p={self.p})"

    def jitter(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b = uniform(1 - self.brightness, 1 + self.brightness, generator)
        c = uniform(1 - self.contrast, 1 + self.contrast, generator)
        s = uniform(1 - self.saturation, 1 + self.saturation, generator)
        h = uniform(-self.hue, self.hue, generator)
        x = image.float() * b
        mean = _luma(x).mean()
        x = (x - mean) * c + mean
        if x.shape[0] >= 3:
            rgb = x[:3]
            grey = _luma(rgb)
            rgb = (rgb - grey) * s + grey
            if h:
                rgb = _hue_rotate(rgb, h)
            x = torch.cat([rgb, x[3:]], 0)
        if self.gamma:
            g = uniform(1 - self.gamma, 1 + self.gamma, generator)
            x = (x.clamp(0, 255) / 255).pow(g) * 255
        return _to_uint8(x)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        return each_image(sample, self.p, lambda image: self.jitter(image, generator), generator)


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """Replace the first three bands by their luminance (3 equal channels), as a panchromatic sensor would give."""
    if image.shape[0] < 3:
        return image
    grey = _to_uint8(_luma(image.float()))
    return torch.cat([grey.expand(3, -1, -1), image[3:]], 0)


class RandomGrayscale:
    """With probability `p` (per image key) make the image grey, so panchromatic input at inference is in-distribution.

    For pairs each date is drawn independently: mixed pairs (old black-and-white archive, new colour) are real.
    """

    def __init__(self, p: float = 0.1) -> None:
        self.p = p

    def __repr__(self) -> str:
        return f"RandomGrayscale(p={self.p})"

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        return each_image(sample, self.p, grayscale, generator)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable gaussian blur of a C x H x W image (reflect padding)."""
    radius = max(1, math.ceil(3 * sigma))
    xs = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(xs**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = image.float().unsqueeze(1)  # C x 1 x H x W: each band blurred on its own
    mode = "reflect" if min(image.shape[-2:]) > radius else "replicate"
    x = F.pad(x, (radius, radius, 0, 0), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return _to_uint8(x[:, 0])


class RandomGaussianBlur:
    """With probability `p` blur by sigma in `sigma` pixels: mimics coarser or slightly defocused imagery."""

    def __init__(self, p: float = 0.1, sigma: tuple[float, float] = (0.3, 1.5)) -> None:
        self.p, self.sigma = p, sigma

    def __repr__(self) -> str:
        return f"RandomGaussianBlur(p={self.p}, sigma={self.sigma})"

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        return each_image(sample, self.p, lambda image: gaussian_blur(image, uniform(*self.sigma, generator)), generator)
