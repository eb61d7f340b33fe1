"""What every augmentation shares: the sample's keys, seeded random draws, and composition.

A sample is a dict. Image keys (`image`, `before`, `after`) hold uint8 C x H x W tensors; label keys
(`mask`, `change`) hold integer H x W tensors where `IGNORE_INDEX` means "no label".

All randomness comes from the `torch.Generator` passed to each call (the dataset seeds one per
sample), so a run is reproducible and independent of DataLoader worker count. Everything is plain
torch: no torchvision import cost, and 1-, 3- and 4-band images all work.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import torch

IMAGE_KEYS: tuple[str, ...] = ("image", "before", "after")
LABEL_KEYS: tuple[str, ...] = ("mask", "change")

Sample = dict


class Transform(Protocol):
    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample: ...


# --- random draws (all through the generator) ----------------------------------------------------
def rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * rand(generator)


def randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Integer in [low, high] inclusive."""
    if high <= low:
        return low
    return int(torch.randint(low, high + 1, (), generator=generator))


def image_keys(sample: Sample) -> list[str]:
    return [k for k in IMAGE_KEYS if k in sample]


def label_keys(sample: Sample) -> list[str]:
    return [k for k in LABEL_KEYS if k in sample]


def spatial_size(sample: Sample) -> tuple[int, int]:
    keys = image_keys(sample) + label_keys(sample)
    if not keys:
        raise KeyError(f"sample has none of {IMAGE_KEYS + LABEL_KEYS}")
    shapes = {tuple(sample[k].shape[-2:]) for k in keys}
    if len(shapes) != 1:
        raise ValueError(f"sample parts differ in size: { {k: tuple(sample[k].shape[-2:]) for k in keys} }")
    return shapes.pop()


# --- composition -------------------------------------------------------------------------------
class Compose:
    """Apply transforms in order with one shared generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        for t in self.transforms:
            sample = t(sample, generator)
        return sample

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"
