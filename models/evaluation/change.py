"""Precision, recall, F1 and IoU of change maps on labelled pairs, for each way the pipeline can make them.

- `class`: the class comparison (any new_building / new_road / new_earthwork pixel, or the kinds
  asked for), exactly as `landsentry predict --before` makes change.tif (clean-up and minimum areas
  included; areas in m² at the given ground resolution, else 16 pixels);
- `learned`: the learned change model's own map (probability >= its threshold, same clean-up);
- `combined`: the class comparison confirmed by the learned model (what `predict` does with a change model).

Counts are pixels summed over all pairs (micro-averaged).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from landsentry.models.analysis.change import ChangeParams, change_map, drop_small_regions, learned_change_mask
from landsentry.models.analysis.flags import FlagRules
from landsentry.models.data.change_layouts import ChangePair
from landsentry.models.data.masks import read_change
from landsentry.models.data.metrics import binary_scores
from landsentry.models.inference.runner import Predictor
from landsentry.models.io.align import open_pair
from landsentry.models.vocabulary.kinds import KIND_NAMES, KINDS

METHODS = ("class", "learned", "combined")
ALL_KINDS = KIND_NAMES
RULES = FlagRules()
"""The minimum areas `landsentry predict` applies: evaluation scores what it would flag."""


def min_pixels(gsd: float | None, rules: FlagRules = RULES) -> dict[int, float]:
    """Minimum region size per change code in pixels: the rules' m² at this ground size, or their pixel minimum."""
    if gsd is None:
        return {k.change_code: rules.min_area_px for k in KINDS}
    return {k.change_code: rules.min_area_m2[k.name] / (gsd * gsd) for k in KINDS}


def _whole(strips: Iterable) -> tuple[np.ndarray, np.ndarray]:
    strips = list(strips)
    return np.concatenate([s.probs for s in strips], axis=1), np.concatenate([s.valid for s in strips], axis=0)


@dataclass
class PairMaps:
    """What the models say about one labelled pair, computed once and scored under any parameters."""

    before: np.ndarray  # K x H x W class probabilities
    after: np.ndarray
    change: np.ndarray | None  # H x W learned change probability, None without a change model
    valid: np.ndarray  # H x W bool, both dates have data
    truth: np.ndarray  # H x W bool, labelled change


def pair_maps(before: Path, after: Path, label: Path, predictor: Predictor, runner, gsd: float | None) -> PairMaps:
    """Both dates' class probabilities and the learned change probability of one pair; `runner` is a ChangeRunner or None."""
    zoom = predictor.zoom_for(gsd)  # as predict does for an input of this ground size
    with open_pair(before, after, channels=predictor.checkpoint.in_channels, gsd=gsd) as pair:
        probs_b, valid_b = _whole(predictor.iter_strips(pair.before, zoom=zoom))
        probs_a, valid_a = _whole(predictor.iter_strips(pair.after, zoom=zoom))
        change = _whole(runner.iter_strips(pair.before, pair.after))[0][0] if runner is not None else None
        shape = (pair.info.height, pair.info.width)
    return PairMaps(probs_b, probs_a, change, valid_a & valid_b, read_change(label, shape).astype(bool))


def score_maps(maps: PairMaps, params: ChangeParams, methods: tuple[str, ...], gsd: float | None,
               kinds: tuple[str, ...] = ALL_KINDS) -> dict[str, np.ndarray]:
    """(tp, fp, fn) counts per method of one pair's maps, with the clean-up and minimum areas `predict` applies."""
    limits = min_pixels(gsd)
    valid, out = maps.valid, {}
    for method in methods:
        if method == "learned":
            mask = learned_change_mask(maps.change, valid, params)
            predicted = drop_small_regions(mask.astype(np.uint8), {1: min(limits.values())}) == 1
        else:
            codes, _ = change_map(maps.before, maps.after, valid, replace(params, use_change_model=method == "combined"),
                                  maps.change if method == "combined" else None)
            codes = drop_small_regions(codes, limits)
            predicted = np.isin(codes, [k.change_code for k in KINDS if k.name in kinds])
        t, p = maps.truth[valid], predicted[valid]
        out[method] = np.array([np.sum(t & p), np.sum(~t & p), np.sum(t & ~p)], np.int64)
    return out


def evaluate_pair(before: Path, after: Path, label: Path, predictor: Predictor, runner, params: ChangeParams,
                  methods: tuple[str, ...], gsd: float | None, kinds: tuple[str, ...] = ALL_KINDS) -> dict[str, np.ndarray]:
    """(tp, fp, fn) counts per method for one pair; `runner` is the learned change model's ChangeRunner (or None)."""
    return score_maps(pair_maps(before, after, label, predictor, runner, gsd), params, methods, gsd, kinds)


@dataclass
class ChangeEvaluation:
    """Summed (tp, fp, fn) per method, scores per pair, and how much of the labels is change."""

    totals: dict[str, np.ndarray]
    per_pair: dict[str, dict[str, dict[str, float]]]
    labelled: int
    changed: int

    def scores(self) -> dict[str, dict[str, float]]:
        """binary_scores of the totals per method, with the counts behind them."""
        return {m: {**binary_scores(*map(int, t)), "tp": int(t[0]), "fp": int(t[1]), "fn": int(t[2])} for m, t in self.totals.items()}


def evaluate_pairs(pairs: Sequence[ChangePair], predictor: Predictor, runner, params: ChangeParams,
                   methods: tuple[str, ...], gsd: float | None, kinds: tuple[str, ...] = ALL_KINDS) -> ChangeEvaluation:
    """`evaluate_pair` over (name, before, after, label) pairs, summed."""
    totals = {m: np.zeros(3, np.int64) for m in methods}
    per_pair = {}
    labelled = changed = 0
    for name, before, after, label in pairs:
        counts = evaluate_pair(before, after, label, predictor, runner, params, methods, gsd, kinds)
        for m in methods:
            totals[m] += counts[m]
        per_pair[name] = {m: binary_scores(*map(int, counts[m])) for m in methods}
        truth = read_change(label)
        labelled += truth.size
        changed += int(truth.sum())
    return ChangeEvaluation(totals, per_pair, labelled, changed)
