"""The one rule for turning 0..255 pixels into network input, for any band count.

Checkpoints store a mean and standard deviation per band (as fractions of 255). Models with other
than three bands use the first band's values for every band (`band_stats`): the ImageNet-trained
first layer is adapted to 1 and 4 bands the same way (`encoder.adapt_first_conv`). Inference,
the change model, training and the bench baseline all normalise through `Normalize`.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def band_stats(values: Iterable[float], channels: int) -> tuple[float, ...]:
    """Per-band values for `channels` bands: as given when the counts match, else the first one repeated."""
    values = tuple(float(v) for v in values)
    return values if len(values) == channels else values[:1] * channels


class Normalize(nn.Module):
    """(x - 255 * mean) / (255 * std) per band, on N x C x H x W tensors of 0..255 pixels."""

    def __init__(self, mean: Iterable[float], std: Iterable[float], channels: int | None = None) -> None:
        super().__init__()
        mean, std = tuple(mean), tuple(std)
        n = channels or len(mean)
        self.register_buffer("mean", torch.tensor(band_stats(mean, n)).view(1, n, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(band_stats(std, n)).view(1, n, 1, 1) * 255.0, persistent=False)

    @property
    def channels(self) -> int:
        return int(self.mean.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
