"""Joint augmentations keep labels on their pixels, pairs on one geometry, and are reproducible."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_shared
import torch
import torch.nn.functional as F
from PIL import Image

from landsentry.models.vocabulary.classes import IGNORE_INDEX
from landsentry.training.transforms import (
    ColorJitter,
    Compose,
    RandomFlipRotate,
    RandomGaussianBlur,
    RandomGrayscale,
    RandomScaleCrop,
    eval_transform,
    grayscale,
    pair_train_transform,
    resize_image,
    resize_label,
    train_transform,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def shared(*parts: str) -> Path:
    """A file or folder of the shared real data (conftest's rule: missing fails under CI=true, else skips)."""
    return require_shared("/".join(parts))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_sample(h: int = 150, w: int = 190, seed: int = 0) -> dict:
    """An image whose mask is a function of its pixels: mask = image[0] > 128 (low-frequency, so few boundaries)."""
    g = gen(seed)
    field = F.interpolate(torch.rand(1, 1, 6, 8, generator=g), size=(h, w), mode="bicubic", align_corners=False)[0, 0]
    field = (field - field.min()) / (field.max() - field.min()) * 255
    ramp = torch.linspace(0, 255, w).expand(h, w)  # channel 2 breaks flip/rotation symmetry
    image = torch.stack([field, 255 - field, ramp]).round().to(torch.uint8)
    return {"image": image, "mask": (image[0] > 128).to(torch.uint8), "source": "synthetic"}


def agreement(sample: dict) -> float:
    labelled = sample["mask"] != IGNORE_INDEX
    derived = (sample["image"][0] > 128).to(sample["mask"].dtype)
    return float((derived == sample["mask"])[labelled].float().mean())


def real_crop() -> torch.Tensor:
    with Image.open(shared("loveda", "Val", "Rural", "images_png", "0.png")) as img:
        return torch.from_numpy(np.asarray(img.crop((300, 300, 556, 556)).convert("RGB")).copy()).permute(2, 0, 1).contiguous()


def test_crop_has_requested_size_and_pads_small_images_with_ignore() -> None:
    sample = smooth_sample(150, 190)
    for seed in range(5):
        out = RandomScaleCrop(96, scale=(0.75, 1.5))(sample, gen(seed))
        assert out["image"].shape == (3, 96, 96) and out["image"].dtype == torch.uint8
        assert out["mask"].shape == (96, 96)
        assert out["source"] == "synthetic"
    small = smooth_sample(40, 30)
    out = RandomScaleCrop(64)(small, gen(1))
    assert out["image"].shape == (3, 64, 64)
    padded = out["mask"] == IGNORE_INDEX
    assert padded.sum() == 64 * 64 - 40 * 30  # exactly the pixels outside the image
    assert (out["image"][:, padded] == 0).all()


def test_flips_and_rotations_keep_mask_exactly_aligned() -> None:
    sample = smooth_sample()
    op = RandomFlipRotate()
    seen = set()
    for seed in range(12):
        out = op(sample, gen(seed))
        assert agreement(out) == 1.0
        seen.add(tuple(out["image"].shape))
    assert seen == {(3, 150, 190), (3, 190, 150)}  # some draws rotated by 90 degrees


def test_scale_crop_keeps_mask_aligned_within_boundary_tolerance() -> None:
    sample = smooth_sample(200, 240)
    transform = Compose([RandomScaleCrop(128, scale=(0.75, 1.5)), RandomFlipRotate()])
    for seed in range(8):
        out = transform(sample, gen(seed))
        assert agreement(out) > 0.97, seed
    # a misaligned mask (shifted by 6 px) would fail the same check: the test can tell
    shifted = dict(sample, mask=torch.roll(sample["mask"], shifts=6, dims=1))
    assert agreement(shifted) < 0.97


def test_label_resize_is_on_the_bilinear_grid() -> None:
    """Nearest for labels and bilinear for images must sample the same positions (no half-pixel shift)."""
    mask = torch.zeros(10, 10, dtype=torch.uint8)
    mask[:, 5:] = 1
    image = (mask * 255).unsqueeze(0)
    for size in [(25, 25), (4, 4), (7, 13)]:
        big_img, big_mask = resize_image(image, size), resize_label(mask, size)
        agree = ((big_img[0] > 127).to(torch.uint8) == big_mask).float().mean()
        assert agree >= 0.9, size


def test_class_aware_crop_centres_on_rare_classes() -> None:
    mask = torch.full((600, 600), 4, dtype=torch.uint8)  # vegetation everywhere
    mask[420:424, 90:160] = 2  # one short thin road
    sample = {"image": torch.zeros(3, 600, 600, dtype=torch.uint8), "mask": mask}
    aware = RandomScaleCrop(64, class_aware_p=1.0)
    plain = RandomScaleCrop(64, class_aware_p=0.0)
    hits_aware = sum(bool((aware(sample, gen(s))["mask"] == 2).any()) for s in range(20))
    hits_plain = sum(bool((plain(sample, gen(s))["mask"] == 2).any()) for s in range(20))
    assert hits_aware == 20
    assert hits_plain < 10
    for s in range(5):  # never off the image when the image is large enough
        assert not (aware(sample, gen(s))["mask"] == IGNORE_INDEX).any()


def test_grayscale_gives_three_equal_channels() -> None:
    image = real_crop()
    out = RandomGrayscale(p=1.0)({"image": image}, gen(0))["image"]
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    four = torch.cat([image, image[:1]])  # RGB + NIR: NIR is kept
    grey4 = grayscale(four)
    assert torch.equal(grey4[0], grey4[2]) and torch.equal(grey4[3], four[3])


def test_colour_ops_work_on_1_3_and_4_bands() -> None:
    image = real_crop()
    for bands in (image[:1], image, torch.cat([image, image[:1]])):
        out = Compose([ColorJitter(p=1.0), RandomGaussianBlur(p=1.0)])({"image": bands}, gen(3))["image"]
        assert out.shape == bands.shape and out.dtype == torch.uint8
        assert not torch.equal(out, bands)
    blurred = RandomGaussianBlur(p=1.0, sigma=(1.5, 1.5))({"image": image}, gen(0))["image"]
    assert blurred.float().std() < image.float().std()


def test_pair_transform_shares_geometry_but_not_colour() -> None:
    image = real_crop()
    change = (image[0] > 128).to(torch.uint8)
    pair = {"before": image, "after": image.clone(), "change": change}
    geometry = Compose([RandomScaleCrop(128, scale=(0.8, 1.25), class_aware_p=0.5), RandomFlipRotate()])
    for seed in range(6):
        out = geometry(pair, gen(seed))
        assert torch.equal(out["before"], out["after"])
        assert out["change"].shape == (128, 128)
        assert agreement({"image": out["before"], "mask": out["change"]}) > 0.9
    jitter = ColorJitter(p=1.0)({"before": image, "after": image.clone()}, gen(0))
    assert not torch.equal(jitter["before"], jitter["after"])  # independent acquisitions
    full = pair_train_transform(128)
    for seed in range(6):
        out = full(pair, gen(seed))
        b = out["before"].float().mean(0).flatten()
        a = out["after"].float().mean(0).flatten()
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.9  # same place, same orientation
        assert set(out["change"].unique().tolist()) <= {0, 1, IGNORE_INDEX}


def test_transforms_are_reproducible_under_a_generator() -> None:
    sample = {"image": real_crop(), "mask": torch.zeros(256, 256, dtype=torch.uint8)}
    transform = train_transform(96)
    first, again, other = transform(sample, gen(7)), transform(sample, gen(7)), transform(sample, gen(8))
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])
    assert not torch.equal(first["image"], other["image"])
    assert torch.equal(sample["image"], real_crop())  # input untouched


def test_eval_transform_centre_pads_to_multiple_of_32() -> None:
    sample = smooth_sample(100, 70)
    out = eval_transform()(sample)
    assert out["image"].shape == (3, 128, 96) and out["mask"].shape == (128, 96)
    assert torch.equal(out["image"][:, 14:114, 13:83], sample["image"])
    assert (out["mask"] == IGNORE_INDEX).sum() == 128 * 96 - 100 * 70
    exact = smooth_sample(64, 96)
    assert torch.equal(eval_transform()(exact)["image"], exact["image"])
    assert eval_transform(crop_size=48)(sample, gen(0))["image"].shape == (3, 64, 64)
