"""What differs between two acquisitions of unchanged ground, drawn independently per date: none of it is change.

Two dates of one place differ by sensor, season, haze, exposure and registration. The change model
must not read those as change, so training pairs get them at random, per date: colour jitter,
white balance and seasonal tint (per-band gains), haze, sensor noise, panchromatic (grey) input and
blur (from `photometric`), and a small misregistration of the before image (a shift of a few
pixels with a slight rotation and scale, as SZTAKI's roughly registered pairs have). Labels stay on
the after image's grid.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from landsentry.training.augment import Compose, Sample, Transform, rand, uniform
from landsentry.training.geometry import RandomFlipRotate
from landsentry.training.photometric import ColorJitter, RandomGaussianBlur, RandomGrayscale, each_image


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


class BandGains:
    """Per-band gains in [1 - g, 1 + g] (white balance, seasonal tint: green fields turn brown), per date with probability `p`."""

    def __init__(self, gain: float = 0.15, p: float = 0.5) -> None:
        self.gain, self.p = gain, p

    def __repr__(self) -> str:
        return f"BandGains(gain={self.gain}, p={self.p})"

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        def tint(image: torch.Tensor) -> torch.Tensor:
            gains = 1 + (torch.rand((image.shape[0], 1, 1), generator=generator) * 2 - 1) * self.gain
            return _to_uint8(image.float() * gains)

        return each_image(sample, self.p, tint, generator)


class Haze:
    """Thin haze: the image pulled a share h in [0, `strength`] toward a bright airlight, per date with probability `p`."""

    def __init__(self, strength: float = 0.3, p: float = 0.2) -> None:
        self.strength, self.p = strength, p

    def __repr__(self) -> str:
        return f"Haze(strength={self.strength}, p={self.p})"

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        def haze(image: torch.Tensor) -> torch.Tensor:
            h, light = uniform(0.0, self.strength, generator), uniform(170.0, 255.0, generator)
            return _to_uint8(image.float() * (1 - h) + h * light)

        return each_image(sample, self.p, haze, generator)


class SensorNoise:
    """Gaussian noise with sigma in [0, `sigma`] grey levels, per date with probability `p`."""

    def __init__(self, sigma: float = 6.0, p: float = 0.2) -> None:
        self.sigma, self.p = sigma, p

    def __repr__(self) -> str:
        return f"SensorNoise(sigma={self.sigma}, p={self.p})"

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        def noise(image: torch.Tensor) -> torch.Tensor:
            s = uniform(0.0, self.sigma, generator)
            return _to_uint8(image.float() + s * torch.randn(image.shape, generator=generator))

        return each_image(sample, self.p, noise, generator)


def warp(image: torch.Tensor, dy: float, dx: float, degrees: float, scale: float) -> torch.Tensor:
    """A uint8 C x H x W image shifted by (dy, dx) pixels, rotated by `degrees` and scaled about its centre (bilinear, reflected edges)."""
    h, w = image.shape[-2:]
    a = math.radians(degrees)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    # affine_grid works in [-1, 1] coordinates: a shift of d pixels is 2d / size
    theta = torch.tensor([[cos, -sin * h / w, -2 * dx / w], [sin * w / h, cos, -2 * dy / h]], dtype=torch.float32)
    grid = F.affine_grid(theta[None], [1, image.shape[0], h, w], align_corners=False)
    out = F.grid_sample(image[None].float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return _to_uint8(out[0])


class Misregister:
    """With probability `p`, the before image shifted up to `shift` px, rotated up to `degrees` and scaled up to `scale`.

    The label stays on the after image's grid; a few pixels of misregistration are not change.
    """

    def __init__(self, shift: float = 2.5, degrees: float = 1.0, scale: float = 0.02, p: float = 0.6) -> None:
        self.shift, self.degrees, self.scale, self.p = shift, degrees, scale, p

    def __repr__(self) -> str:
        return f"Misregister(shift={self.shift}, degrees={self.degrees}, scale={self.scale}, p={self.p})"

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        if rand(generator) >= self.p:
            return sample
        s = self.shift
        dy, dx = uniform(-s, s, generator), uniform(-s, s, generator)
        degrees = uniform(-self.degrees, self.degrees, generator)
        scale = 1 + uniform(-self.scale, self.scale, generator)
        return {**sample, "before": warp(sample["before"], dy, dx, degrees, scale)}


def date_transform(strength: float = 1.0, misregister: float = 2.5, grey_p: float = 0.15, blur_p: float = 0.15) -> Compose:
    """Flips and rotations for the pair, then independent acquisition differences per date (`strength` scales the colour ones)."""
    ops: list[Transform] = [
        RandomFlipRotate(),
        ColorJitter(brightness=0.25 * strength, contrast=0.25 * strength, saturation=0.3 * strength, hue=0.03 * strength, p=0.8),
        BandGains(0.15 * strength, p=0.5),
        Haze(0.3 * strength, p=0.2),
        RandomGrayscale(grey_p),
        RandomGaussianBlur(blur_p),
        SensorNoise(6.0 * strength, p=0.2),
    ]
    if misregister > 0:
        ops.append(Misregister(shift=misregister))
    return Compose(ops)
