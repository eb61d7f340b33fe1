"""Class-aware change (models/analysis/change.py) on generated probability maps where the planted change is known exactly.

All arrays here are generated in this file: smooth "scenes" of class probabilities with blocks of
buildings, a road and bare soil planted at known places.
"""
from __future__ import annotations

import numpy as np
import pytest

from landsentry.models.analysis.change import ChangeParams, StripChange, change_map, clean_masks, drop_small_regions, learned_change_mask
from landsentry.models.vocabulary.kinds import BY_NAME, CHANGE_NODATA as NODATA

NEW_BUILDING, NEW_ROAD, NEW_EARTHWORK = (BY_NAME[k].change_code for k in ("building", "road", "earthwork"))
from landsentry.models.vocabulary.classes import CLASS_ID

K = 6
B, R, S, V = CLASS_ID["building"], CLASS_ID["road"], CLASS_ID["bare_soil"], CLASS_ID["vegetation"]


def probs_from_classes(classes: np.ndarray, sure: float = 0.9) -> np.ndarray:
    """K x H x W probabilities: `sure` on the given class, the rest spread evenly (generated)."""
    p = np.full((K,) + classes.shape, (1 - sure) / (K - 1), np.float32)
    for k in range(K):
        p[k][classes == k] = sure
    return p


def scene() -> np.ndarray:
    """A 120 x 160 class map: vegetation with two old buildings and an old road (generated)."""
    c = np.full((120, 160), V, np.uint8)
    c[10:30, 10:40] = B
    c[60:75, 100:130] = B
    c[90:96, :] = R
    return c


def planted() -> tuple[np.ndarray, dict[int, tuple[slice, slice]]]:
    """The scene after: a new building, a new road and new earthwork at known places."""
    c = scene()
    where = {NEW_BUILDING: (slice(20, 40), slice(60, 85)), NEW_ROAD: (slice(40, 110), slice(140, 146)), NEW_EARTHWORK: (slice(100, 118), slice(20, 60))}
    c[where[NEW_BUILDING]] = B
    c[where[NEW_ROAD]] = R
    c[where[NEW_EARTHWORK]] = S
    return c, where


def test_planted_changes_found_exactly():
    before = scene()
    after, where = planted()
    valid = np.ones(before.shape, bool)
    codes, conf = change_map(probs_from_classes(before), probs_from_classes(after), valid)
    expected = np.zeros(before.shape, np.uint8)
    for code, (rows, cols) in where.items():
        expected[rows, cols] = code
    # the new road crosses the old one (rows 90-95): within the 3 px tolerance of the old road it is not new
    expected[87:99, 140:146] = 0
    assert (codes == expected).all(), {c: int(((codes == c) != (expected == c)).sum()) for c in (1, 2, 3)}
    assert conf[codes > 0].min() > 0.8 and conf[codes == 0].max() == 0


def test_unchanged_scene_gives_no_change():
    p = probs_from_classes(scene())
    codes, conf = change_map(p, p.copy(), np.ones((120, 160), bool))
    assert (codes == 0).all() and (conf == 0).all()


@pytest.mark.parametrize("dy,dx", [(2, 0), (0, 2), (2, 2), (-2, 1), (3, -3)])
def test_misregistered_copy_is_not_change(dy, dx):
    """The same scene shifted by a few pixels (as two dates registered badly): no new buildings or roads."""
    before = scene()
    after = np.roll(before, (dy, dx), axis=(0, 1))
    codes, _ = change_map(probs_from_classes(before), probs_from_classes(after), np.ones(before.shape, bool))
    assert (codes == 0).all(), f"{int((codes > 0).sum())} changed pixels from a ({dy}, {dx}) shift"
    # without the tolerance the same shift floods the edges with false change
    strict, _ = change_map(probs_from_classes(before), probs_from_classes(after), np.ones(before.shape, bool),
                           ChangeParams(tolerance_px=0, open_px=0))
    assert (strict > 0).sum() > 50


def test_colour_differences_do_not_matter_only_classes_do():
    """Class comparison: a date that the model finds less sure of the same classes is not change."""
    before = scene()
    codes, _ = change_map(probs_from_classes(before, 0.95), probs_from_classes(before, 0.6), np.ones(before.shape, bool))
    assert (codes == 0).all()


def test_nodata_and_misplaced_before_probabilities():
    before = scene()
    after, where = planted()
    valid = np.ones(before.shape, bool)
    valid[:, :50] = False  # the before image does not reach the left part
    codes, conf = change_map(probs_from_classes(before), probs_from_classes(after), valid)
    assert (codes[:, :50] == NODATA).all() and (conf[:, :50] == 0).all()
    assert (codes[where[NEW_BUILDING]][:, 10:] == NEW_BUILDING).all(), "the new building right of the gap is still found"


def test_low_probabilities_are_not_flagged():
    before = scene()
    after, _ = planted()
    p_after = probs_from_classes(after, sure=0.35)  # argmax right, but below min_after_prob (0.4)
    codes, _ = change_map(probs_from_classes(before), p_after, np.ones(before.shape, bool))
    assert (codes == 0).all()
    codes, _ = change_map(probs_from_classes(before), p_after, np.ones(before.shape, bool), ChangeParams(min_after_prob=0.3))
    assert (codes > 0).sum() > 500


def test_opening_removes_specks_and_closing_fills_holes():
    import torch

    m = torch.zeros(1, 1, 40, 40)
    m[0, 0, 5, 5] = 1  # a speck
    m[0, 0, 10:30, 10:30] = 1
    m[0, 0, 20, 20] = 0  # a pinhole
    out = clean_masks(m, 1, 1)[0, 0]
    assert out[5, 5] == 0 and out[20, 20] == 1
    assert out[10:30, 10:30].sum() == 400 and out.sum() == 400


def test_learned_model_vetoes_unsure_class_changes():
    before = scene()
    after, where = planted()
    pb, pa = probs_from_classes(before), probs_from_classes(after, sure=0.55)  # score 0.55 * (1 - 0.02) < 0.6: unsure
    valid = np.ones(before.shape, bool)
    learned = np.zeros(before.shape, np.float32)
    learned[where[NEW_BUILDING]] = 0.9  # the change model sees change only where the building appeared
    codes, conf = change_map(pb, pa, valid, ChangeParams(), learned)
    assert set(np.unique(codes).tolist()) == {0, NEW_BUILDING}
    assert conf[codes == NEW_BUILDING].mean() == pytest.approx((0.55 * (1 - 0.02) + 0.9) / 2, abs=0.005)
    # very sure class changes pass even when the model disagrees
    codes, _ = change_map(pb, probs_from_classes(after, sure=0.97), valid, ChangeParams(), learned)
    assert {NEW_ROAD, NEW_EARTHWORK} <= set(np.unique(codes).tolist())
    # a learned probability at or above change_threshold lets an unsure change through
    codes, _ = change_map(pb, pa, valid, ChangeParams(), np.full(before.shape, 0.06, np.float32))
    assert {NEW_BUILDING, NEW_ROAD, NEW_EARTHWORK} <= set(np.unique(codes).tolist())
    # and the learned model can be switched off
    codes, _ = change_map(pb, pa, valid, ChangeParams(use_change_model=False), learned)
    assert {NEW_BUILDING, NEW_ROAD, NEW_EARTHWORK} <= set(np.unique(codes).tolist())
    mask = learned_change_mask(learned, valid)
    assert mask.sum() == 20 * 25


def test_learned_model_alone_adds_changes_the_classes_missed():
    """With `learned_alone`, a confident learned change is new even where the after image's top class is not a kind,
    labelled with the after image's most likely kind, if that kind is likely enough."""
    before = scene()
    pb = probs_from_classes(before)
    pa = pb.copy()
    missed = (slice(40, 60), slice(20, 50))  # a new building the segmentation model half sees: vegetation 0.5, building 0.3
    pa[:, missed[0], missed[1]] = 0.04
    pa[V][missed], pa[B][missed] = 0.5, 0.3
    lake = (slice(100, 115), slice(60, 90))  # learned change with no kind in sight (a pond filled): never flagged
    learned = np.zeros(before.shape, np.float32)
    learned[missed] = 0.9
    learned[lake] = 0.9
    valid = np.ones(before.shape, bool)
    veto_only, _ = change_map(pb, pa, valid, ChangeParams(), learned)
    assert (veto_only == 0).all()
    codes, conf = change_map(pb, pa, valid, ChangeParams(learned_alone=0.5, min_kind_prob=0.2), learned)
    assert (codes[missed] == NEW_BUILDING).all() and (codes == NEW_BUILDING).sum() == 20 * 30
    assert (codes[lake] == 0).all()
    assert conf[missed].mean() == pytest.approx((0.3 * (1 - 0.02) + 0.9) / 2, abs=0.005)
    assert (change_map(pb, pa, valid, ChangeParams(learned_alone=0.95), learned)[0] == 0).all(), "below the threshold: nothing"
    assert (change_map(pb, pa, valid, ChangeParams(learned_alone=0.5, min_kind_prob=0.35), learned)[0] == 0).all()
    with pytest.raises(ValueError):
        ChangeParams(learned_alone=1.5)


@pytest.mark.parametrize("heights", [[120], [40, 40, 40], [7, 50, 3, 60], [1] * 120])
def test_strips_give_the_same_result_as_the_whole(heights):
    rng = np.random.default_rng(0)  # generated: random class maps, smoothed a little by repetition
    before = np.repeat(np.repeat(rng.integers(0, K, (30, 40)), 4, 0), 4, 1).astype(np.uint8)
    after = np.repeat(np.repeat(rng.integers(0, K, (30, 40)), 4, 0), 4, 1).astype(np.uint8)
    pb, pa = probs_from_classes(before, 0.8), probs_from_classes(after, 0.8)
    valid = rng.random(before.shape) > 0.02
    learned = rng.random(before.shape).astype(np.float32)
    params = ChangeParams(tolerance_px=2, open_px=1, close_px=2)
    whole, whole_conf = change_map(pb, pa, valid, params, learned)
    assert (whole > 0).sum() > 100
    stitch = StripChange(params)
    out, conf, row = [], [], 0
    for i, h in enumerate(heights):
        for s in stitch.push(row, pb[:, row : row + h], pa[:, row : row + h], valid[row : row + h], learned[row : row + h], last=i == len(heights) - 1):
            assert s.row0 == sum(x.shape[0] for x in out)
            out.append(s.codes)
            conf.append(s.confidence)
        row += h
    assert (np.concatenate(out) == whole).all()
    assert np.allclose(np.concatenate(conf), whole_conf)


def test_strips_must_be_consecutive():
    p = probs_from_classes(scene())
    stitch = StripChange()
    stitch.push(0, p[:, :40], p[:, :40], np.ones((40, 160), bool))
    with pytest.raises(ValueError, match="consecutive"):
        stitch.push(50, p[:, 50:], p[:, 50:], np.ones((70, 160), bool), last=True)


def test_drop_small_regions_by_code():
    codes = np.zeros((50, 50), np.uint8)
    codes[2:4, 2:4] = NEW_BUILDING  # 4 px
    codes[10:20, 10:20] = NEW_BUILDING  # 100 px
    codes[30:33, 30:40] = NEW_ROAD  # 30 px
    codes[45:50, 45:50] = NODATA
    out = drop_small_regions(codes, {NEW_BUILDING: 5, NEW_ROAD: 31})
    assert (out[2:4, 2:4] == 0).all() and (out[10:20, 10:20] == NEW_BUILDING).all()
    assert (out[30:33, 30:40] == 0).all() and (out[45:, 45:] == NODATA).all()


def test_params_are_checked():
    with pytest.raises(ValueError):
        ChangeParams(min_after_prob=1.5)
    with pytest.raises(ValueError):
        ChangeParams(tolerance_px=-1)
    assert ChangeParams(tolerance_px=3, open_px=1, close_px=1).halo == 8


def test_the_same_image_twice_is_never_change_whatever_the_thresholds():
    rng = np.random.default_rng(1)  # generated: unsure, noisy probabilities like an untrained model's
    p = rng.dirichlet(np.ones(K), size=(60, 80)).transpose(2, 0, 1).astype(np.float32)
    loose = ChangeParams(min_after_prob=0.0, max_before_prob=1.0, open_px=0, close_px=0, tolerance_px=0)
    codes, _ = change_map(p, p.copy(), np.ones((60, 80), bool), loose)
    assert (codes == 0).all()
    other = rng.dirichlet(np.ones(K), size=(60, 80)).transpose(2, 0, 1).astype(np.float32)
    assert (change_map(p, other, np.ones((60, 80), bool), loose)[0] > 0).any(), "different images do change"
