"""`landsentry evaluate-change FOLDER`: precision, recall, F1 and IoU of change maps on labelled pairs.

FOLDER is in the LEVIR-CD folder shape (`[SPLIT/]A/*.png`, `B/*.png`, `label/*.png`, same names;
LEVIR-CD and EGY-BCD) or SZTAKI AirChange layout (`<site>_<n>/A.png, B.png, label.png`, or one
such folder), optionally named by its layout (`levir:PATH`, `egy:PATH`, `sztaki:PATH`): then the
layout's ground resolution is the default `--gsd`. Labels: 255 (or 1) = change, 0 = none. Scores are pixel counts summed over all pairs (micro-averaged) for each method:

- `class`: the class comparison (any new_building / new_road / new_earthwork pixel, or the
  `--kinds` given), exactly as
  `landsentry predict --before` makes change.tif (clean-up and minimum areas included; areas in m²
  with --gsd, else 16 pixels);
- `learned`: the learned change model's own map (probability >= --learned-threshold, same clean-up);
- `combined`: the class comparison confirmed by the learned model (what `predict` does with a
  change model).

Argument parsing and printing only: pairs come from the data layer (`find_pairs`), the scoring
from `landsentry.models.evaluation.change`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from landsentry.models.analysis.change import ChangeParams
from landsentry.models.cli.options import check_common_options
from landsentry.models.data.change_layouts import LevirCD, SplitPairFolders, find_pairs
from landsentry.models.data.registry import change_folder
from landsentry.models.evaluation.change import ALL_KINDS, METHODS, RULES, evaluate_pairs
from landsentry.models.inference.runner import Predictor
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.errors import InputError

TITLES = {
    "class": "class comparison (any new_* pixel)",
    "learned": "learned change model (prob >= t)",
    "combined": "class comparison AND learned model",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry evaluate-change", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="LEVIR-CD-shaped (A/, B/, label/) or SZTAKI-layout folder, or levir:PATH, egy:PATH, sztaki:PATH")
    p.add_argument("--split", default="test", help="LEVIR-CD split folder to use (train, val, test, or 'all'); ignored when FOLDER has A/ itself")
    p.add_argument("--sites", nargs="*", default=None, help="SZTAKI: only pair folders whose name starts with one of these (e.g. Szada)")
    p.add_argument("--checkpoint", type=Path, default=None, help="segmentation checkpoint (default: the bundled model)")
    p.add_argument("--change-checkpoint", type=Path, default=None, help="learned change model (default: the bundled one when present)")
    p.add_argument("--no-change-model", action="store_true", help="score the class comparison only")
    p.add_argument("--method", choices=METHODS + ("all",), default="all", help="which change map(s) to score (default: all available)")
    p.add_argument("--kinds", nargs="+", choices=ALL_KINDS, default=list(ALL_KINDS),
                   help="which new_* kinds count as change for the class-based maps (LEVIR-CD labels buildings only)")
    p.add_argument("--working-gsd", type=float, default=None,
                   help="metres per pixel the segmentation model sees (default: its checkpoint's working resolution; 0: never resample)")
    p.add_argument("--gsd", type=float, default=None,
                   help="metres per pixel of the images, for the minimum areas in m² (default: the named layout's: LEVIR-CD 0.5, EGY-BCD 0.25, SZTAKI 1.5)")
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


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    check_common_options(args)
    layout, args.folder = change_folder(args.folder)
    if args.gsd is None and layout is not None:
        args.gsd = layout.gsd
    pairs = find_pairs(args.folder, args.split, args.sites,
                       layout if layout is not None and issubclass(layout, SplitPairFolders) else LevirCD)
    from landsentry.models.inference.runner import ChangeRunner
    from landsentry.models.nn.change_net import BUNDLED_CHANGE_CHECKPOINT, load_change_model

    kwargs = {k: getattr(args, k) for k in ("tolerance_px", "min_after_prob", "max_before_prob", "change_threshold", "learned_threshold") if getattr(args, k) is not None}
    try:
        params = ChangeParams(**kwargs)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    checkpoint = load_checkpoint(args.checkpoint)
    predictor = Predictor(checkpoint, device=args.device, tile=args.tile, overlap=args.overlap, working_gsd=args.working_gsd)
    runner, change_ckpt = None, None
    if not args.no_change_model and (args.change_checkpoint is not None or BUNDLED_CHANGE_CHECKPOINT.is_file()):
        model, change_ckpt = load_change_model(args.change_checkpoint)
        runner = ChangeRunner(model, change_ckpt, device=args.device, tile=args.tile, overlap=args.overlap)
    available = METHODS if runner is not None else ("class",)
    methods = available if args.method == "all" else (args.method,)
    if any(m not in available for m in methods):
        raise InputError(f"--method {args.method} needs a learned change model (--change-checkpoint; none is bundled)")
    evaluation = evaluate_pairs(pairs, predictor, runner, params, methods, args.gsd, tuple(args.kinds))
    per_pair, labelled, changed = evaluation.per_pair, evaluation.labelled, evaluation.changed
    where = f"{args.folder}" + (f" (split {args.split})" if any("/" in n for n in per_pair) else "")
    print(f"evaluate-change: {len(pairs)} pair(s) from {where}, {labelled:,} labelled pixels, {changed / max(1, labelled):.1%} changed")
    print(f"segmentation model: {checkpoint.path}; change model: {change_ckpt.path if change_ckpt else 'none'}; "
          f"min areas: {'m² at ' + str(args.gsd) + ' m/px' if args.gsd else f'{RULES.min_area_px} px'}")
    if len(args.kinds) < 3:
        print(f"class-based maps count new_{', new_'.join(args.kinds)} only")
    print(f"{'method':<40} {'precision':>9} {'recall':>7} {'F1':>6} {'IoU':>6}")
    results = evaluation.scores()
    for m in methods:
        s = results[m]
        print(f"{TITLES[m]:<40} {s['precision']:>9.3f} {s['recall']:>7.3f} {s['f1']:>6.3f} {s['iou']:>6.3f}")
    if args.per_pair:
        for name, by_method in per_pair.items():
            print(f"  {name:<38} " + "  ".join(f"{m}: F1 {v['f1']:.3f} IoU {v['iou']:.3f}" for m, v in by_method.items()))
    if args.json is not None:
        args.json.write_text(json.dumps({"folder": str(args.folder), "pairs": list(per_pair), "params": params.as_dict(),
                                         "gsd": args.gsd, "working_gsd": predictor.working_gsd, "kinds": args.kinds, "scores": results, "per_pair": per_pair}, indent=1))
    return 0

