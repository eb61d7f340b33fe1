"""`landsentry evaluate-change FOLDER`: precision, recall, F1 and IoU of change maps on labelled pairs.

FOLDER is in LEVIR-CD layout (`[SPLIT/]A/*.png`, `B/*.png`, `label/*.png`, same names) or SZTAKI
AirChange layout (`<site>_<n>/A.png, B.png, label.png`, or one such folder). Labels: 255 (or 1) =
change, 0 = none. Scores are pixel counts summed over all pairs (micro-averaged) for each method:

- `class`: the class comparison (any new_building / new_road / new_earthwork pixel, or the
  `--kinds` given), exactly as
  `landsentry predict --before` makes change.tif (clean-up and minimum areas included; areas in m²
  with --gsd, else 16 pixels);
- `learned`: the learned change model's own map (probability >= --learned-threshold, same clean-up);
- `combined`: the class comparison confirmed by the learned model (what `predict` does with a
  change model).

This module reads images with models.raster only (models/ never imports training/).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from landsentry.models.io.align import open_pair
from landsentry.models.analysis.change import ChangeParams, change_map, drop_small_regions, learned_change_mask
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.cli.options import check_common_options
from landsentry.models.vocabulary.errors import InputError
from landsentry.models.analysis.flags import FlagRules
from landsentry.models.vocabulary.kinds import KINDS
from landsentry.models.inference.runner import Predictor
from landsentry.models.io.formats import sniff_format

METHODS = ("class", "learned", "combined")
RULES = FlagRules()
"""The minimum areas `landsentry predict` applies (evaluation scores what it would flag)."""
TITLES = {
    "class": "class comparison (any new_* pixel)",
    "learned": "learned change model (prob >= t)",
    "combined": "class comparison AND learned model",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry evaluate-change", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="LEVIR-CD-layout (A/, B/, label/) or SZTAKI-layout folder")
    p.add_argument("--split", default="test", help="LEVIR-CD split folder to use (train, val, test, or 'all'); ignored when FOLDER has A/ itself")
    p.add_argument("--sites", nargs="*", default=None, help="SZTAKI: only pair folders whose name starts with one of these (e.g. Szada)")
    p.add_argument("--checkpoint", type=Path, default=None, help="segmentation checkpoint (default: the bundled model)")
    p.add_argument("--change-checkpoint", type=Path, default=None, help="learned change model (default: the bundled one when present)")
    p.add_argument("--no-change-model", action="store_true", help="score the class comparison only")
    p.add_argument("--method", choices=METHODS + ("all",), default="all", help="which change map(s) to score (default: all available)")
    p.add_argument("--kinds", nargs="+", choices=("building", "road", "earthwork"), default=["building", "road", "earthwork"],
                   help="which new_* kinds count as change for the class-based maps (LEVIR-CD labels buildings only)")
    p.add_argument("--gsd", type=float, default=None, help="metres per pixel of the images, for the minimum areas in m² (LEVIR-CD 0.5, SZTAKI 1.5)")
    p.add_argument("--tolerance-px", type=int, default=None)
    p.add_argument("--min-after-prob", type=float, default=None)
    p.add_argument("--max-before-prob", type=float, default=None)
    p.add_argument("--change-threshold", type=float, default=None)
    p.add_argument("--learned-threshold", type=float, default=None, help="threshold of the learned model's own map (default 0.5)")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=None, help="window overlap in pixels (default: tile / 16)")
    p.add_argument("--device", default="auto")
    p.add_argument("--per-pair", action="store_true", help="also print the scores of each pair")
    p.add_argument("--json", type=Path, default=None, help="write the scores to this JSON file")
    return p


def find_pairs(folder: Path, split: str = "test", sites: list[str] | None = None) -> list[tuple[str, Path, Path, Path]]:
    """(name, before, after, label) of every pair under FOLDER, in LEVIR-CD or SZTAKI layout."""
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    pairs: list[tuple[str, Path, Path, Path]] = []
    if (folder / "A").is_dir() or any((folder / s / "A").is_dir() for s in ("train", "val", "test")):
        roots = [folder] if (folder / "A").is_dir() else (
            [folder / s for s in ("train", "val", "test") if (folder / s / "A").is_dir()] if split == "all" else [folder / split])
        for root in roots:
            if not (root / "A").is_dir():
                raise InputError(f"{folder} has no split {split!r} (expected {root}/A, B and label folders)")
            for before in sorted(p for p in (root / "A").iterdir() if p.is_file() and not p.name.startswith(".")):
                after, label = root / "B" / before.name, root / "label" / before.name
                missing = [str(p) for p in (after, label) if not p.is_file()]
                if missing:
                    raise InputError(f"{before}: missing {', '.join(missing)}")
                pairs.append((f"{root.name}/{before.stem}", before, after, label))
    else:
        folders = [folder] if (folder / "A.png").is_file() else sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        for d in folders:
            files = [d / "A.png", d / "B.png", d / "label.png"]
            if not any(f.is_file() for f in files):
                continue
            if not all(f.is_file() for f in files):
                raise InputError(f"{d}: missing {', '.join(f.name for f in files if not f.is_file())}")
            if sites and not any(d.name.startswith(s) for s in sites):
                continue
            pairs.append((d.name, *files))
    if not pairs:
        raise InputError(f"no change pairs found under {folder} (expected LEVIR-CD A/, B/, label/ folders or SZTAKI <site>/A.png, B.png, label.png)")
    return pairs


def read_label(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Bool H x W change label (255 or, in 0/1-coded files, 1 = change)."""
    sniff_format(path)
    try:
        with Image.open(path) as img:
            raw = np.asarray(img)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path.name} is not a readable label image: {exc}") from None
    if raw.ndim == 3:
        raw = raw[..., 0]
    if raw.shape != shape:
        raise InputError(f"label {path} is {raw.shape[1]}x{raw.shape[0]} px but the images are {shape[1]}x{shape[0]}")
    return raw == 255 if raw.max(initial=0) > 1 else raw == 1


def min_pixels(gsd: float | None) -> dict[int, float]:
    """Minimum region size per change code in pixels: the default m² at this ground size, or 16 px."""
    if gsd is None:
        return {k.change_code: RULES.min_area_px for k in KINDS}
    return {k.change_code: RULES.min_area_m2[k.name] / (gsd * gsd) for k in KINDS}


def scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou}


def _whole(strips) -> tuple[np.ndarray, np.ndarray]:
    strips = list(strips)
    return np.concatenate([s.probs for s in strips], axis=1), np.concatenate([s.valid for s in strips], axis=0)


def evaluate_pair(before: Path, after: Path, label: Path, predictor: Predictor, runner, params: ChangeParams,
                  methods: tuple[str, ...], gsd: float | None, kinds: tuple[str, ...] = ("building", "road", "earthwork")) -> dict[str, np.ndarray]:
    """(tp, fp, fn) counts per method for one pair."""
    with open_pair(before, after, channels=predictor.checkpoint.in_channels, gsd=gsd) as pair:
        probs_b, valid_b = _whole(predictor.iter_strips(pair.before))
        probs_a, valid_a = _whole(predictor.iter_strips(pair.after))
        change = _whole(runner.iter_strips(pair.before, pair.after))[0][0] if runner is not None else None
        shape = (pair.info.height, pair.info.width)
    truth = read_label(label, shape)
    valid = valid_a & valid_b
    limits = min_pixels(gsd)
    out = {}
    for method in methods:
        if method == "learned":
            mask = learned_change_mask(change, valid, params)
            predicted = drop_small_regions(mask.astype(np.uint8), {1: min(limits.values())}) == 1
        else:
            codes, _ = change_map(probs_b, probs_a, valid, replace(params, use_change_model=method == "combined"),
                                  change if method == "combined" else None)
            codes = drop_small_regions(codes, limits)
            predicted = np.isin(codes, [k.change_code for k in KINDS if k.name in kinds])
        t, p = truth[valid], predicted[valid]
        out[method] = np.array([np.sum(t & p), np.sum(~t & p), np.sum(t & ~p)], np.int64)
    return out


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    check_common_options(args)
    pairs = find_pairs(args.folder, args.split, args.sites)
    from landsentry.models.inference.runner import ChangeRunner
    from landsentry.models.nn.change_net import BUNDLED_CHANGE_CHECKPOINT, load_change_model

    kwargs = {k: getattr(args, k) for k in ("tolerance_px", "min_after_prob", "max_before_prob", "change_threshold", "learned_threshold") if getattr(args, k) is not None}
    try:
        params = ChangeParams(**kwargs)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    checkpoint = load_checkpoint(args.checkpoint)
    predictor = Predictor(checkpoint, device=args.device, tile=args.tile, overlap=args.overlap)
    runner, change_ckpt = None, None
    if not args.no_change_model and (args.change_checkpoint is not None or BUNDLED_CHANGE_CHECKPOINT.is_file()):
        model, change_ckpt = load_change_model(args.change_checkpoint)
        runner = ChangeRunner(model, change_ckpt, device=args.device, tile=args.tile, overlap=args.overlap)
    available = METHODS if runner is not None else ("class",)
    methods = available if args.method == "all" else (args.method,)
    if any(m not in available for m in methods):
        raise InputError(f"--method {args.method} needs a learned change model (--change-checkpoint; none is bundled)")
    totals = {m: np.zeros(3, np.int64) for m in methods}
    per_pair = {}
    labelled = changed = 0
    for name, before, after, label in pairs:
        counts = evaluate_pair(before, after, label, predictor, runner, params, methods, args.gsd, tuple(args.kinds))
        for m in methods:
            totals[m] += counts[m]
        per_pair[name] = {m: scores(*map(int, counts[m])) for m in methods}
        truth = read_label(label, _size(label))
        labelled += truth.size
        changed += int(truth.sum())
    where = f"{args.folder}" + (f" (split {args.split})" if any("/" in n for n in per_pair) else "")
    print(f"evaluate-change: {len(pairs)} pair(s) from {where}, {labelled:,} labelled pixels, {changed / max(1, labelled):.1%} changed")
    print(f"segmentation model: {checkpoint.path}; change model: {change_ckpt.path if change_ckpt else 'none'}; "
          f"min areas: {'m² at ' + str(args.gsd) + ' m/px' if args.gsd else f'{RULES.min_area_px} px'}")
    if len(args.kinds) < 3:
        print(f"class-based maps count new_{', new_'.join(args.kinds)} only")
    print(f"{'method':<40} {'precision':>9} {'recall':>7} {'F1':>6} {'IoU':>6}")
    results = {}
    for m in methods:
        s = scores(*map(int, totals[m]))
        results[m] = {**s, "tp": int(totals[m][0]), "fp": int(totals[m][1]), "fn": int(totals[m][2])}
        print(f"{TITLES[m]:<40} {s['precision']:>9.3f} {s['recall']:>7.3f} {s['f1']:>6.3f} {s['iou']:>6.3f}")
    if args.per_pair:
        for name, by_method in per_pair.items():
            print(f"  {name:<38} " + "  ".join(f"{m}: F1 {v['f1']:.3f} IoU {v['iou']:.3f}" for m, v in by_method.items()))
    if args.json is not None:
        args.json.write_text(json.dumps({"folder": str(args.folder), "pairs": list(per_pair), "params": params.as_dict(),
                                         "gsd": args.gsd, "kinds": args.kinds, "scores": results, "per_pair": per_pair}, indent=1))
    return 0


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size[1], img.size[0]
