"""Joint augmentations for segmentation samples and change-detection pairs, in plain torch.

A sample is a dict. Image keys (`image`, `before`, `after`) hold uint8 C x H x W tensors; label keys
(`mask`, `change`) hold integer H x W tensors where `IGNORE_INDEX` means "no label". Every geometric
op draws its parameters once and applies them to all keys, so labels stay on their pixels and both
dates of a pair get the same geometry. Colour ops draw parameters per image key, so the two dates
of a pair get independent jitter (two acquisitions never share exposure or atmosphere).

All randomness comes from the `torch.Generator` passed to each call (the dataset seeds one per
sample), so a run is reproducible and independent of DataLoader worker count. Everything is plain
torch: no torchvision import cost, and 1-, 3- and 4-band images all work.
"""
from __future__ import annotations

import math
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F

from landsentry.models.vocabulary.classes import CLASS_ID, IGNORE_INDEX

IMAGE_KEYS: tuple[str, ...] = ("image", "before", "after")
LABEL_KEYS: tuple[str, ...] = ("mask", "change")
RARE_CLASSES: tuple[int, ...] = (CLASS_ID["building"], CLASS_ID["road"], CLASS_ID["bare_soil"])
"""Classes a class-aware crop centres on: thin or small things a random crop mostly misses."""
DEFAULT_RARE: dict[str, tuple[int, ...]] = {"mask": RARE_CLASSES, "change": (1,)}
_LUMA = (0.299, 0.587, 0.114)
_MAX_SCAN = 1 << 18  # label pixels looked at when searching rare-class pixels (strided)

Sample = dict


class Transform(Protocol):
    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample: ...


# --- random draws (all through the generator) ---------------------------------------------------
def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * _rand(generator)


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Integer in [low, high] inclusive."""
    if high <= low:
        return low
    return int(torch.randint(low, high + 1, (), generator=generator))


def _image_keys(sample: Sample) -> list[str]:
    return [k for k in IMAGE_KEYS if k in sample]


def _label_keys(sample: Sample) -> list[str]:
    return [k for k in LABEL_KEYS if k in sample]


def _spatial_size(sample: Sample) -> tuple[int, int]:
    keys = _image_keys(sample) + _label_keys(sample)
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


# --- geometry ----------------------------------------------------------------------------------
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
    hits = [(sub == c).nonzero() for c in classes]
    hits = [h for h in hits if len(h)]
    if not hits:
        return None
    chosen = hits[_randint(0, len(hits) - 1, generator)]
    y, x = chosen[_randint(0, len(chosen) - 1, generator)].tolist()
    return min(H - 1, y * step + _randint(0, step - 1, generator)), min(W - 1, x * step + _randint(0, step - 1, generator))


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
        labels = _label_keys(sample)
        if not labels or self.class_aware_p <= 0 or _rand(generator) >= self.class_aware_p:
            return None
        key = labels[0]
        classes = self.rare_classes if self.rare_classes is not None else DEFAULT_RARE.get(key, RARE_CLASSES)
        pixel = _rare_pixel(sample[key], classes, generator)
        if pixel is None:
            return None
        span = int(self.jitter * side)
        cy, cx = pixel
        top = cy - side // 2 + _randint(-span, span, generator)
        left = cx - side // 2 + _randint(-span, span, generator)
        # keep the window inside the image where it fits (and the rare pixel inside the window)
        top = min(max(top, min(0, H - side), cy - side + 1), max(0, H - side), cy)
        left = min(max(left, min(0, W - side), cx - side + 1), max(0, W - side), cx)
        return top, left

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        H, W = _spatial_size(sample)
        lo, hi = self.scale
        factor = math.exp(_uniform(math.log(lo), math.log(hi), generator)) if hi > lo else lo
        side = max(1, round(self.size / factor))
        placed = self._centre(sample, H, W, side, generator)
        if placed is None:  # uniform position; an image smaller than the window lands anywhere inside it
            top = _randint(min(0, H - side), max(0, H - side), generator)
            left = _randint(min(0, W - side), max(0, W - side), generator)
        else:
            top, left = placed
        out = dict(sample)
        size = (self.size, self.size)
        for k in _image_keys(sample):
            out[k] = resize_image(window(sample[k], top, left, side, side, 0), size).clone()
        for k in _label_keys(sample):
            out[k] = resize_label(window(sample[k], top, left, side, side, IGNORE_INDEX), size).clone()
        return out


class RandomFlipRotate:
    """Random horizontal / vertical flips and 90-degree rotations: overhead imagery has no 'up'."""

    def __init__(self, hflip: float = 0.5, vflip: float = 0.5, rot90: bool = True) -> None:
        self.hflip, self.vflip, self.rot90 = hflip, vflip, rot90

    def __repr__(self) -> str:
        return f"RandomFlipRotate(hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90})"

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        h = _rand(generator) < self.hflip
        v = _rand(generator) < self.vflip
        k = _randint(0, 3, generator) if self.rot90 else 0
        out = dict(sample)
        for key in _image_keys(sample) + _label_keys(sample):
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
    H, W = _spatial_size(sample)
    Hp, Wp = -(-H // multiple) * multiple, -(-W // multiple) * multiple
    if (Hp, Wp) == (H, W):
        return dict(sample)
    top, left = (Hp - H) // 2, (Wp - W) // 2
    out = dict(sample)
    for k in _image_keys(sample):
        out[k] = window(sample[k], -top, -left, Hp, Wp, 0)
    for k in _label_keys(sample):
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


# --- colour ------------------------------------------------------------------------------------
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
    Factors are drawn from [1 - x, 1 + x] (hue: a shift in [-hue, hue] turns). Applied with probability `p`.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.02, p: float = 0.8) -> None:
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p

    def __repr__(self) -> str:
        return f"ColorJitter(b={self.brightness}, c={self.contrast}, s={self.saturation}, h={self.hue}, p={self.p})"

    def jitter(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b = _uniform(1 - self.brightness, 1 + self.brightness, generator)
        c = _uniform(1 - self.contrast, 1 + self.contrast, generator)
        s = _uniform(1 - self.saturation, 1 + self.saturation, generator)
        h = _uniform(-self.hue, self.hue, generator)
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
        return _to_uint8(x)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        out = dict(sample)
        for k in _image_keys(sample):
            if _rand(generator) < self.p:
                out[k] = self.jitter(sample[k], generator)
        return out


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
        out = dict(sample)
        for k in _image_keys(sample):
            if _rand(generator) < self.p:
                out[k] = grayscale(sample[k])
        return out


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
        out = dict(sample)
        for k in _image_keys(sample):
            if _rand(generator) < self.p:
                out[k] = gaussian_blur(sample[k], _uniform(*self.sigma, generator))
        return out


# --- presets -----------------------------------------------------------------------------------
def train_transform(
    crop_size: int = 512,
    scale: tuple[float, float] = (0.75, 1.5),
    class_aware_p: float = 0.5,
    rare_classes: Sequence[int] | None = None,
    color: bool = True,
    grayscale_p: float = 0.1,
    blur_p: float = 0.1,
) -> Compose:
    """Training augmentation for single images or pairs: scale-jittered (class-aware) crop, flips/rotations, colour.

    `rare_classes` None means building/road/bare_soil for `mask` samples and "changed" for `change` pairs.
    """
    ops: list[Transform] = [RandomScaleCrop(crop_size, scale, class_aware_p, rare_classes), RandomFlipRotate()]
    if color:
        ops.append(ColorJitter())
    if grayscale_p > 0:
        ops.append(RandomGrayscale(grayscale_p))
    if blur_p > 0:
        ops.append(RandomGaussianBlur(blur_p))
    return Compose(ops)


def pair_train_transform(
    crop_size: int = 256,
    scale: tuple[float, float] = (0.8, 1.25),
    class_aware_p: float = 0.3,
    grayscale_p: float = 0.1,
    blur_p: float = 0.1,
) -> Compose:
    """Training augmentation for before/after/change pairs: same geometry for both dates, mild independent colour.

    Colour jitter is milder than for single images, so it simulates acquisition differences without
    teaching the model that large colour shifts are not change.
    """
    ops: list[Transform] = [
        RandomScaleCrop(crop_size, scale, class_aware_p, (1,)),
        RandomFlipRotate(),
        ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.01, p=0.8),
    ]
    if grayscale_p > 0:
        ops.append(RandomGrayscale(grayscale_p))
    if blur_p > 0:
        ops.append(RandomGaussianBlur(blur_p))
    return Compose(ops)


def eval_transform(multiple: int = 32, crop_size: int | None = None) -> Compose:
    """Evaluation: no augmentation; whole images centre-padded (ignore) to a multiple of `multiple`.

    With `crop_size`, a plain random crop first (fixed across epochs when the dataset has a `seed`),
    for a cheap fixed validation subset of large images.
    """
    ops: list[Transform] = []
    if crop_size:
        ops.append(RandomScaleCrop(crop_size))
    ops.append(PadToMultiple(multiple))
    return Compose(ops)
