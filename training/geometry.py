"""Geometric augmentations: crops at random scales (class-aware), flips and rotations, padding to the encoder's stride.

Every geometric op draws its parameters once and applies them to all keys, so labels stay on their
pixels and both dates of a pair get the same geometry. Images are resampled bilinearly, labels by
nearest pixel on the same grid; pixels from outside the image are 0 in images and IGNORE_INDEX in labels.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from landsentry.models.vocabulary.classes import CLASS_ID, IGNORE_INDEX
from landsentry.training.augment import Sample, image_keys, label_keys, rand, randint, spatial_size, uniform

RARE_CLASSES: tuple[int, ...] = (CLASS_ID["building"], CLASS_ID["road"], CLASS_ID["bare_soil"])
"""Classes a class-aware crop centres on: thin or small things a random crop mostly misses."""
DEFAULT_RARE: dict[str, tuple[int, ...]] = {"mask": RARE_CLASSES, "change": (1,)}
_MAX_SCAN = 1 << 18  # label pixels looked at when searching rare-class pixels (strided)


def window(t: torch.Tensor, top: int, left: int, height: int, width: int, fill: int) -> torch.Tensor:
    """The [top:top+height, left:left+width] window of the last two dims; outside the tensor is `fill`."""
    H, W = t.shape[-2:]
    y0, y1 = max(top, 0), min(top + height, H)
    x0, x1 = max(left, 0), min(left + width, W)
    if y0 == top and x0 == left and y1 == top + height and x1 == left + width:
        return t[..., top:top + height, left:left + width]
    out = t.new_full(t.shape[:-2] + (height, width), fill)
    if y1 > y0 and x1 > x0:
        out[..., y0 - top:y1 - top, x0 - left:x1 - left] = t[..., y0:y1, x0:x1]
    return out


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of a uint8 C x H x W image, half-pixel centres."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    x = image.unsqueeze(0).float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return x[0].round_().clamp_(0, 255).to(image.dtype)


def resize_label(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest resize of an H x W label on the same half-pixel grid as `resize_image` ("nearest-exact").

    Legacy "nearest" samples the top-left neighbour and shifts labels by up to half a source pixel
    against bilinear images; this picks the source pixel whose centre is nearest.
    """
    H, W = label.shape[-2:]
    if (H, W) == tuple(size):
        return label
    ys = ((torch.arange(size[0], dtype=torch.float64) + 0.5) * (H / size[0])).floor().long().clamp_(max=H - 1)
    xs = ((torch.arange(size[1], dtype=torch.float64) + 0.5) * (W / size[1])).floor().long().clamp_(max=W - 1)
    return label[..., ys[:, None], xs[None, :]]


def _rare_pixel(label: torch.Tensor, classes: Sequence[int], generator: torch.Generator | None) -> tuple[int, int] | None:
    """A random pixel of a random rare class present in `label` (class first, so roads are not outvoted by buildings).

    Scans a strided subsample so a 4000 x 4000 mask costs about as much as a 512 x 512 one.
    """
    H, W = label.shape[-2:]
    step = max(1, math.ceil(math.sqrt(H * W / _MAX_SCAN)))
    sub = label[::step, ::step]
    # the first present class of a random order is a uniform choice among the present ones; only the
    # chosen class's pixels are listed (listing every rare class cost ~40 % of a sample's preparation)
    order = torch.randperm(len(classes), generator=generator).tolist()
    for i in order:
        hit = (sub == classes[i]).reshape(-1).nonzero()
        if len(hit):
            break
    else:
        return None
    flat = int(hit[randint(0, len(hit) - 1, generator), 0])
    y, x = divmod(flat, sub.shape[-1])
    return min(H - 1, y * step + randint(0, step - 1, generator)), min(W - 1, x * step + randint(0, step - 1, generator))


class RandomScaleCrop:
    """Crop `size` x `size` after zooming by a random factor in `scale` (log-uniform), padding with ignore.

    Implemented as: pick a source window of side `size / factor`, cut it (pixels beyond the image
    become 0 in images and IGNORE_INDEX in labels), resize it to `size` - bilinear for images, nearest
    for labels. Cutting first keeps the cost independent of the full image size.
    With probability `class_aware_p` the window is centred (with a random offset of up to `jitter`
    of its side, so rare pixels are not always in the middle) on a pixel of a rare class: roads are
    a few pixels wide and a uniform crop often holds none. `rare_classes` defaults per label key:
    building/road/bare_soil for `mask`, 1 (changed) for `change`.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (1.0, 1.0),
        class_aware_p: float = 0.0,
        rare_classes: Sequence[int] | None = None,
        jitter: float = 0.25,
    ) -> None:
        if size <= 0:
            raise ValueError(f"crop size must be positive, got {size}")
        if not (0 < scale[0] <= scale[1]):
            raise ValueError(f"scale range must satisfy 0 < lo <= hi, got {scale}")
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.class_aware_p = float(class_aware_p)
        self.rare_classes = tuple(rare_classes) if rare_classes is not None else None
        self.jitter = float(jitter)

    def __repr__(self) -> str:
        return f"RandomScaleCrop(size={self.size}, scale={self.scale}, class_aware_p={self.class_aware_p})"

    def _centre(self, sample: Sample, H: int, W: int, side: int, generator: torch.Generator | None) -> tuple[int, int] | None:
        labels = label_keys(sample)
        if not labels or self.class_aware_p <= 0 or rand(generator) >= self.class_aware_p:
            return None
        key = labels[0]
        classes = self.rare_classes if self.rare_classes is not None else DEFAULT_RARE.get(key, RARE_CLASSES)
        pixel = _rare_pixel(sample[key], classes, generator)
        if pixel is None:
            return None
        span = int(self.jitter * side)
        cy, cx = pixel
        top = cy - side // 2 + randint(-span, span, generator)
        left = cx - side // 2 + randint(-span, span, generator)
        # keep the window inside the image where it fits (and the rare pixel inside the window)
        top = min(max(top, min(0, H - side), cy - side + 1), max(0, H - side), cy)
        left = min(max(left, min(0, W - side), cx - side + 1), max(0, W - side), cx)
        return top, left

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        H, W = spatial_size(sample)
        lo, hi = self.scale
        factor = math.exp(uniform(math.log(lo), math.log(hi), generator)) if hi > lo else lo
        side = max(1, round(self.size / factor))
        placed = self._centre(sample, H, W, side, generator)
        if placed is None:  # uniform position; an image smaller than the window lands anywhere inside it
            top = randint(min(0, H - side), max(0, H - side), generator)
            left = randint(min(0, W - side), max(0, W - side), generator)
        else:
            top, left = placed
        out = dict(sample)
        size = (self.size, self.size)
        for k in image_keys(sample):
            out[k] = resize_image(window(sample[k], top, left, side, side, 0), size).clone()
        for k in label_keys(sample):
            out[k] = resize_label(window(sample[k], top, left, side, side, IGNORE_INDEX), size).clone()
        return out


class RandomFlipRotate:
    """Random horizontal / vertical flips and 90-degree rotations: overhead imagery has no 'up'."""

    def __init__(self, hflip: float = 0.5, vflip: float = 0.5, rot90: bool = True) -> None:
        self.hflip, self.vflip, self.rot90 = hflip, vflip, rot90

    def __repr__(self) -> str:
        return f"RandomFlipRotate(hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90})"

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        h = rand(generator) < self.hflip
        v = rand(generator) < self.vflip
        k = randint(0, 3, generator) if self.rot90 else 0
        out = dict(sample)
        for key in image_keys(sample) + label_keys(sample):
            t = sample[key]
            if h:
                t = t.flip(-1)
            if v:
                t = t.flip(-2)
            if k:
                t = torch.rot90(t, k, dims=(-2, -1))
            out[key] = t
        return out


def pad_to_multiple(sample: Sample, multiple: int = 32) -> Sample:
    """Centre-pad every part so height and width are multiples of `multiple` (the encoder's stride).

    Images are padded with 0, labels with IGNORE_INDEX, so padding never counts in loss or metrics.
    """
    H, W = spatial_size(sample)
    Hp, Wp = -(-H // multiple) * multiple, -(-W // multiple) * multiple
    if (Hp, Wp) == (H, W):
        return dict(sample)
    top, left = (Hp - H) // 2, (Wp - W) // 2
    out = dict(sample)
    for k in image_keys(sample):
        out[k] = window(sample[k], -top, -left, Hp, Wp, 0)
    for k in label_keys(sample):
        out[k] = window(sample[k], -top, -left, Hp, Wp, IGNORE_INDEX)
    return out


class PadToMultiple:
    """`pad_to_multiple` as a transform."""

    def __init__(self, multiple: int = 32) -> None:
        self.multiple = multiple

    def __repr__(self) -> str:
        return f"PadToMultiple({self.multiple})"

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        return pad_to_multiple(sample, self.multiple)
