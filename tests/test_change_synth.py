"""Change pairs made from single dates (training/change_synth.py) and the per-date differences that are not change
(training/change_augment.py), on generated arrays whose labels are known exactly."""
from __future__ import annotations

import pytest
import torch

from landsentry.models.vocabulary.classes import CLASS_ID, IGNORE_INDEX
from landsentry.training.change_augment import BandGains, Haze, Misregister, SensorNoise, date_transform, warp
from landsentry.training.change_synth import (
    CHANGE_CLASSES, components, feather, harmonise, paste_pair, random_blob, unrelated_label, unrelated_pair,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
B, R, S, V, W = (CLASS_ID[n] for n in ("building", "road", "bare_soil", "vegetation", "water"))


def scene() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A grey base, and a donor (64 x 64) with two buildings, one road and vegetation, each in its own colour."""
    base = torch.full((3, 64, 64), 100, dtype=torch.uint8)
    donor = torch.zeros((3, 64, 64), dtype=torch.uint8)
    mask = torch.full((64, 64), V, dtype=torch.uint8)
    mask[5:15, 5:15] = B
    mask[30:40, 40:52] = B
    mask[50:54, :] = R
    for cls, colour in ((V, (20, 120, 20)), (B, (200, 60, 60)), (R, (90, 90, 90))):
        donor[:, mask == cls] = torch.tensor(colour, dtype=torch.uint8)[:, None]
    return base, donor, mask


def test_components_are_the_objects_of_each_change_class():
    _, _, mask = scene()
    found = components(mask)
    assert sorted((c, int(m.sum())) for c, m in found) == [(B, 100), (B, 120), (R, 256)]
    assert components(mask, (S,)) == []
    assert [c for c, _ in components(mask, (B,), min_px=110)] == [B], "components under min_px are skipped"


def test_pasting_every_object_into_the_after_image_labels_exactly_those_pixels():
    base, donor, mask = scene()
    pair = paste_pair(base, donor, mask, torch.Generator().manual_seed(0), max_objects=1, both_p=0.0, harmonise_p=0.0, grow=0, sigma=0.0)
    objects = torch.isin(mask, torch.tensor(CHANGE_CLASSES, dtype=torch.uint8))
    changed = pair["change"] == 1
    assert changed.sum() in (100, 120, 256) and (changed <= objects).all(), "one whole object, nothing else"
    assert torch.equal(pair["before"], base), "the before image is the base"
    assert torch.equal(pair["after"][:, changed], donor[:, changed]) and torch.equal(pair["after"][:, ~changed], base[:, ~changed])
    assert set(pair["change"].unique().tolist()) == {0, 1}

    all_pasted = paste_pair(base, donor, mask, torch.Generator().manual_seed(1), max_objects=99, both_p=0.0, harmonise_p=0.0, grow=0, sigma=0.0)
    counts = [int((paste_pair(base, donor, mask, torch.Generator().manual_seed(s), max_objects=99, both_p=0.0, harmonise_p=0.0,
                               grow=0, sigma=0.0)["change"] == 1).sum()) for s in range(12)]
    assert set(counts) <= {100, 120, 256, 220, 356, 376, 476} and 476 in counts, "1 to 3 objects per pair, all three sometimes"
    assert (all_pasted["change"] == 1).sum() in counts


def test_objects_pasted_into_both_dates_are_not_change():
    base, donor, mask = scene()
    pair = paste_pair(base, donor, mask, torch.Generator().manual_seed(3), max_objects=99, both_p=1.0, harmonise_p=0.0, grow=0, sigma=0.0)
    assert torch.equal(pair["before"], pair["after"]) and not torch.equal(pair["after"], base)
    assert (pair["change"] == 0).all()


def test_feathered_edges_are_left_unlabelled():
    base, donor, mask = scene()
    pair = paste_pair(base, donor, mask, torch.Generator().manual_seed(0), max_objects=99, both_p=0.0, harmonise_p=0.0, grow=2, sigma=1.0)
    change = pair["change"]
    core = change == 1
    ring = change == IGNORE_INDEX
    assert ring.any() and core.any()
    # the ring hugs the objects: every unlabelled pixel lies within 2 + 3 sigma + 1 px of a changed one
    near = torch.nn.functional.max_pool2d(core[None, None].float(), 13, stride=1, padding=6)[0, 0] > 0
    assert (ring <= near).all()
    assert torch.equal(pair["after"][:, change == 0], base[:, change == 0]), "labelled no-change pixels are untouched"
    alpha = feather(mask == B, 2, 1.0)
    assert alpha[mask == B].min() == 1.0 and alpha[0, 63] == 0.0 and 0 < alpha[4, 10] < 1


def test_no_objects_means_a_no_change_pair():
    base, donor, _ = scene()
    empty = torch.full((64, 64), V, dtype=torch.uint8)
    pair = paste_pair(base, donor, empty, torch.Generator().manual_seed(0))
    assert torch.equal(pair["before"], base) and torch.equal(pair["after"], base) and (pair["change"] == 0).all()


def test_bare_soil_areas_are_pasted_as_patches_of_themselves():
    base = torch.full((3, 64, 64), 100, dtype=torch.uint8)
    donor = torch.full((3, 64, 64), 180, dtype=torch.uint8)
    mask = torch.full((64, 64), S, dtype=torch.uint8)  # all graded land: a patch of it is pasted, not the whole crop
    pair = paste_pair(base, donor, mask, torch.Generator().manual_seed(0), harmonise_p=0.0, both_p=0.0, grow=0, sigma=0.0)
    share = (pair["change"] == 1).float().mean()
    assert 0.03 < share < 0.35
    blob = random_blob((64, 64), 0.2, torch.Generator().manual_seed(5))
    assert abs(blob.float().mean().item() - 0.2) < 0.02


def test_distractor_ground_is_no_change_and_never_covers_a_building():
    """Bare soil pasted as a distractor changes the after image, not the label, and stays off the base's buildings."""
    base = torch.full((3, 64, 64), 100, dtype=torch.uint8)
    base_mask = torch.full((64, 64), V, dtype=torch.uint8)
    base_mask[20:40, 20:40] = B  # a building of the base: must survive
    base_mask[0:8, :] = IGNORE_INDEX  # unlabelled rows: nothing pasted there either
    donor = torch.full((3, 64, 64), 200, dtype=torch.uint8)
    donor_mask = torch.full((64, 64), S, dtype=torch.uint8)  # all bare soil, no building: only distractors to paste
    for seed in range(6):
        pair = paste_pair(base, donor, donor_mask, torch.Generator().manual_seed(seed), classes=(B,), distractors=(S,),
                          base_mask=base_mask, harmonise_p=0.0)
        assert (pair["change"] == 0).all() and torch.equal(pair["before"], base)
        moved = (pair["after"] != base).any(0)
        assert moved.any() and not moved[20:40, 20:40].any() and not moved[:8].any()
    plain = paste_pair(base, donor, donor_mask, torch.Generator().manual_seed(0), classes=(B,), distractors=(S,))
    assert torch.equal(plain["after"], base), "without the base's labels no distractor is pasted"


def test_unrelated_pairs_are_change_where_a_kind_appears_or_goes():
    before = torch.tensor([[B, B, V, V, S, IGNORE_INDEX, R]], dtype=torch.uint8)
    after = torch.tensor([[B, V, W, R, V, B, IGNORE_INDEX]], dtype=torch.uint8)
    assert unrelated_label(before, after).tolist() == [[0, 1, 0, 1, 1, IGNORE_INDEX, IGNORE_INDEX]]
    assert unrelated_label(before, after, (B,)).tolist() == [[0, 1, 0, 0, 0, IGNORE_INDEX, IGNORE_INDEX]]
    img = torch.zeros((3, 1, 7), dtype=torch.uint8)
    assert torch.equal(unrelated_pair(img, before, img + 1, after)["after"], img + 1)


def test_harmonise_moves_the_donor_toward_the_base():
    g = torch.Generator().manual_seed(0)
    donor = (torch.rand((3, 32, 32), generator=g) * 100).to(torch.uint8)
    base = (torch.rand((3, 32, 32), generator=g) * 50 + 150).to(torch.uint8)
    full = harmonise(donor, base, 1.0).float()
    assert torch.allclose(full.mean((1, 2)), base.float().mean((1, 2)), atol=1.0)
    assert torch.equal(harmonise(donor, base, 0.0), donor)


def test_warp_by_whole_pixels_is_a_shift():
    img = (torch.arange(40 * 48) % 251).to(torch.uint8).view(1, 40, 48).repeat(3, 1, 1)
    moved = warp(img, 2.0, -3.0, 0.0, 1.0)
    assert torch.equal(moved[:, 2:, :-3], img[:, :-2, 3:]), "content moves 2 px down and 3 px left"
    assert torch.equal(warp(img, 0.0, 0.0, 0.0, 1.0), img)


def test_acquisition_differences_touch_each_date_on_its_own_and_never_the_label():
    g = torch.Generator().manual_seed(0)
    img = (torch.rand((3, 64, 64), generator=g) * 200 + 20).to(torch.uint8)
    change = torch.zeros((64, 64), dtype=torch.int64)
    change[10:20, 10:20] = 1
    sample = {"before": img, "after": img.clone(), "change": change}
    for op in (BandGains(p=1.0), Haze(p=1.0), SensorNoise(p=1.0)):
        out = op(sample, torch.Generator().manual_seed(1))
        assert not torch.equal(out["before"], out["after"]), op
        assert torch.equal(out["change"], change), op
    moved = Misregister(p=1.0)(sample, torch.Generator().manual_seed(2))
    assert torch.equal(moved["after"], img) and not torch.equal(moved["before"], img)
    out = date_transform(misregister=0.0)(sample, torch.Generator().manual_seed(3))
    assert out["change"].sum() == 100 and out["change"].shape == (64, 64), "flips and rotations move the label, never change it"
    assert date_transform(misregister=0.0).transforms[0].__class__.__name__ == "RandomFlipRotate"
