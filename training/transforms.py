"""Joint augmentations for segmentation samples and change-detection pairs, in plain torch: the presets.

A sample is a dict of uint8 C x H x W images (`image`, or `before` and `after`) and integer H x W
labels (`mask`, `change`; `IGNORE_INDEX` = no label). Geometric ops (`geometry`) draw once and move
every key alike, so labels stay on their pixels and both dates share geometry; colour ops
(`photometric`) draw per image key. All randomness comes from the generator each call receives
(`augment`), so runs are reproducible whatever the DataLoader worker count.

The presets below are what training uses; the ops are re-exported here as the one public face.
"""
from __future__ import annotations

from typing import Sequence

from landsentry.training.augment import IMAGE_KEYS, LABEL_KEYS, Compose, Sample, Transform
from landsentry.training.geometry import (
    DEFAULT_RARE, RARE_CLASSES, PadToMultiple, RandomFlipRotate, RandomScaleCrop, pad_to_multiple, resize_image, resize_label, window,
)
from landsentry.training.photometric import ColorJitter, RandomGaussianBlur, RandomGrayscale, gaussian_blur, grayscale


def train_transform(
    crop_size: int = 512,
    scale: tuple[float, float] = (0.75, 1.5),
    class_aware_p: float = 0.5,
    rare_classes: Sequence[int] | None = None,
    color: bool = True,
    grayscale_p: float = 0.1,
    blur_p: float = 0.1,
    color_strength: float = 1.0,
) -> Compose:
    """Training augmentation for single images or pairs: scale-jittered (class-aware) crop, flips/rotations, colour.

    `rare_classes` None means building/road/bare_soil for `mask` samples and "changed" for `change` pairs.
    `color_strength` scales the colour jitter; above 1 it adds a random tone curve (gamma) too, for
    sensors and seasons the training places do not show.
    """
    ops: list[Transform] = [RandomScaleCrop(crop_size, scale, class_aware_p, rare_classes), RandomFlipRotate()]
    if color:
        s = color_strength
        ops.append(ColorJitter(0.2 * s, 0.2 * s, 0.2 * s, 0.02 * s, gamma=0.2 * (s - 1) if s > 1 else 0.0))
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


__all__ = [
    "train_transform", "pair_train_transform", "eval_transform",
    "Compose", "Sample", "Transform", "IMAGE_KEYS", "LABEL_KEYS", "RARE_CLASSES", "DEFAULT_RARE",
    "RandomScaleCrop", "RandomFlipRotate", "PadToMultiple", "pad_to_multiple", "resize_image", "resize_label", "window",
    "ColorJitter", "RandomGrayscale", "RandomGaussianBlur", "grayscale", "gaussian_blur",
]
