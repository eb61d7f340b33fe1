"""Change pairs whose labels are known from single-date labels (single-temporal supervision, after ChangeStar / STAR).

Real change pairs are few; labelled single images are many. Two ways to make a pair out of them:

- `paste_pair`: the same image twice, with objects of the change kinds (buildings, roads, bare-soil
  patches) cut from a labelled donor crop and pasted into the *after* image at their own position.
  Everything not pasted is the same ground in both dates, so it is exactly "no change" whatever the
  base image shows (it needs no labels at all); the pasted object pixels are change. Some objects are
  pasted into *both* dates (label 0): the pasting itself (edges, colour mismatch) is then no evidence
  of change, only the difference between the dates is. Edges are feathered, the ring between the
  object and its feathered edge is left unlabelled.
- `unrelated_pair`: two different labelled crops as before and after (STAR): a pixel changed where
  the two labels differ and one of them is a change kind; pixels unlabelled in either are ignored.

Everything here works on uint8 C x H x W images and uint8 H x W masks (schema ids, IGNORE_INDEX =
unknown) of one crop size, with one seeded `torch.Generator`, so a test can check every label.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from landsentry.models.vocabulary.classes import CLASS_ID, IGNORE_INDEX
from landsentry.training.augment import rand, randint, uniform
from landsentry.training.photometric import gaussian_blur

CHANGE_CLASSES: tuple[int, ...] = (CLASS_ID["building"], CLASS_ID["road"], CLASS_ID["bare_soil"])
"""Classes whose appearance (or disappearance) is change: the kinds landsentry flags."""
PATCH_CLASSES: tuple[int, ...] = (CLASS_ID["bare_soil"],)
"""Classes that come as large areas (graded land): pasted as a random blob of the area, like an earthwork patch."""
_EIGHT = np.ones((3, 3), bool)


def components(mask: torch.Tensor, classes: Sequence[int] = CHANGE_CLASSES, min_px: int = 12) -> list[tuple[int, torch.Tensor]]:
    """(class, H x W bool) for every 8-connected component of each class in `classes` with at least `min_px` pixels."""
    m = mask.numpy()
    out: list[tuple[int, torch.Tensor]] = []
    for c in classes:
        labels, n = ndimage.label(m == c, structure=_EIGHT)
        if n == 0:
            continue
        counts = np.bincount(labels.ravel(), minlength=n + 1)
        for i in np.flatnonzero(counts >= min_px):
            if i:
                out.append((c, torch.from_numpy(labels == i)))
    return out


def random_blob(shape: tuple[int, int], share: float, generator: torch.Generator | None) -> torch.Tensor:
    """A smooth random H x W bool shape covering about `share` of the area (thresholded low-frequency noise)."""
    h, w = shape
    cells = randint(2, 5, generator)
    noise = torch.rand((1, 1, cells, cells), generator=generator)
    field = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False)[0, 0]
    cut = torch.quantile(field.flatten(), 1.0 - share)
    return field >= cut


def _dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    if px <= 0:
        return mask
    return F.max_pool2d(mask[None, None].float(), 2 * px + 1, stride=1, padding=px)[0, 0] > 0


def feather(core: torch.Tensor, grow: int, sigma: float) -> torch.Tensor:
    """Alpha (float H x W, 0..1) of an object: its mask grown by `grow` px with edges blurred by `sigma`; 1 on the object.

    Computed on the object's bounding box with a margin, so small objects cost little.
    """
    alpha = torch.zeros(core.shape, dtype=torch.float32)
    rows, cols = core.any(1).nonzero(), core.any(0).nonzero()
    if not len(rows):
        return alpha
    m = grow + (int(3 * sigma) + 1 if sigma > 0 else 0)
    y0, y1 = max(0, int(rows[0]) - m), min(core.shape[0], int(rows[-1]) + m + 1)
    x0, x1 = max(0, int(cols[0]) - m), min(core.shape[1], int(cols[-1]) + m + 1)
    box = core[y0:y1, x0:x1]
    a = _dilate(box, grow).to(torch.uint8)[None] * 255
    if sigma > 0:
        a = gaussian_blur(a, sigma)
    alpha[y0:y1, x0:x1] = torch.maximum(a[0].float() / 255.0, box.float())
    return alpha


def blend(base: torch.Tensor, donor: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """base * (1 - alpha) + donor * alpha, as uint8."""
    out = base.float() * (1 - alpha) + donor.float() * alpha
    return out.round_().clamp_(0, 255).to(torch.uint8)


def harmonise(donor: torch.Tensor, base: torch.Tensor, strength: float) -> torch.Tensor:
    """Move the donor's per-band mean and spread a share `strength` of the way to the base's (pasted objects then match its light)."""
    d, b = donor.float().flatten(1), base.float().flatten(1)
    dm, ds = d.mean(1, keepdim=True), d.std(1, keepdim=True).clamp(min=1.0)
    bm, bs = b.mean(1, keepdim=True), b.std(1, keepdim=True).clamp(min=1.0)
    mean, std = dm + strength * (bm - dm), ds + strength * (bs - ds)
    out = (d - dm) / ds * std + mean
    return out.view_as(donor).round_().clamp_(0, 255).to(torch.uint8)


def _object(cls: int, core: torch.Tensor, generator: torch.Generator | None, patches: Sequence[int] = PATCH_CLASSES) -> torch.Tensor:
    """What of a component is pasted: a patch class larger than a blob gets cut to a random blob of itself."""
    if cls in patches and core.float().mean() > 0.05:
        cut = core & random_blob(tuple(core.shape), uniform(0.05, 0.3, generator), generator)
        if cut.sum() >= 12:
            return cut
    return core


def paste_pair(base: torch.Tensor, donor: torch.Tensor, donor_mask: torch.Tensor, generator: torch.Generator | None = None,
               classes: Sequence[int] = CHANGE_CLASSES, max_objects: int = 8, both_p: float = 0.25,
               harmonise_p: float = 0.5, grow: int = 2, sigma: float = 1.0, distractors: Sequence[int] = (),
               base_mask: torch.Tensor | None = None) -> dict:
    """{"before", "after": uint8 C x H x W, "change": int64 H x W (1, 0, IGNORE_INDEX)} from one base crop and one labelled donor crop.

    Up to `max_objects` components of `classes` in the donor are pasted where they lie in the donor
    crop (same size as the base): each into the after image only (label 1) or, with probability
    `both_p`, into both dates (label 0). A donor without such objects gives a no-change pair.
    With the base's labels (`base_mask`), patches of `distractors` classes (vegetation, bare soil:
    ground that changes with the season or the plough) go into the after image first, as no change,
    only over base pixels labelled as some class outside `classes` (never over a building that would
    then vanish): a head trained for building change learns that other ground changes are not it.
    """
    if base.shape[-2:] != donor.shape[-2:] or donor_mask.shape != donor.shape[-2:]:
        raise ValueError(f"base {tuple(base.shape)}, donor {tuple(donor.shape)} and mask {tuple(donor_mask.shape)} differ in size")
    if rand(generator) < harmonise_p:
        donor = harmonise(donor, base, uniform(0.3, 1.0, generator))
    comps = components(donor_mask, classes)
    order = torch.randperm(len(comps), generator=generator).tolist()
    chosen = [comps[i] for i in order[: randint(1, max_objects, generator)]] if comps else []
    before, after = base.clone(), base.clone()
    change = torch.zeros(base.shape[-2:], dtype=torch.int64)
    ground = components(donor_mask, distractors, min_px=64) if distractors and base_mask is not None else []
    if ground:
        free = (base_mask != IGNORE_INDEX) & ~torch.isin(base_mask, torch.tensor(list(classes), dtype=base_mask.dtype))
        for i in torch.randperm(len(ground), generator=generator).tolist()[: randint(1, 3, generator)]:
            cls, core = ground[i]
            after = blend(after, donor, feather(_object(cls, core, generator, distractors) & free, 0, sigma) * free)
    for cls, core in chosen:
        core = _object(cls, core, generator)
        alpha = feather(core, grow, sigma)
        ring = (alpha > 0) & ~core
        after = blend(after, donor, alpha)
        if rand(generator) < both_p:
            before = blend(before, donor, alpha)
            change[core] = 0
            change[ring & (change == 1)] = IGNORE_INDEX  # its edge over an earlier new object is unsure
        else:
            change[core] = 1
            change[ring & (change == 0)] = IGNORE_INDEX
    return {"before": before, "after": after, "change": change}


def unrelated_label(before_mask: torch.Tensor, after_mask: torch.Tensor, classes: Sequence[int] = CHANGE_CLASSES) -> torch.Tensor:
    """Change between two labelled crops: 1 where the classes differ and one is a change kind, IGNORE_INDEX where either is unknown."""
    kinds = torch.tensor(list(classes), dtype=before_mask.dtype)
    known = (before_mask != IGNORE_INDEX) & (after_mask != IGNORE_INDEX)
    changed = (before_mask != after_mask) & (torch.isin(before_mask, kinds) | torch.isin(after_mask, kinds))
    out = changed.to(torch.int64)
    out[~known] = IGNORE_INDEX
    return out


def unrelated_pair(before: torch.Tensor, before_mask: torch.Tensor, after: torch.Tensor, after_mask: torch.Tensor,
                   classes: Sequence[int] = CHANGE_CLASSES) -> dict:
    """Two different labelled crops as a pair (STAR): change = `unrelated_label` of their masks."""
    return {"before": before, "after": after, "change": unrelated_label(before_mask, after_mask, classes)}
