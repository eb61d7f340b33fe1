"""Choose the change thresholds (`ChangeParams`) on validation pairs: the models run once, every setting is scored.

    python -m training.tune_change --change-checkpoint runs/dev/change.pt            # validation pairs
    python -m training.tune_change --change-checkpoint runs/dev/change.pt --grid change_threshold=0.1,0.3 confident_score=0.6,1.0
    python -m training.tune_change --change-checkpoint models/weights/landsentry-change.pt --sets test   # report only

The validation sets are LEVIR-CD val, EGY-BCD val and SZTAKI Archieve (the suburban site beside the
held-out Szada); thresholds are chosen by the mean F1 over the sets (each set's pixels summed), so
no one set decides. Use a change head trained without these pairs (`train_change --holdout
levir/val egy/val sztaki/Archieve`). `--sets test` scores the held-out test sets with fixed
parameters and never chooses anything on them.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from landsentry.models.analysis.change import ChangeParams
from landsentry.models.data.change_layouts import EgyBCD, LevirCD, find_pairs
from landsentry.models.data.metrics import binary_scores
from landsentry.models.evaluation.change import PairMaps, pair_maps, score_maps
from landsentry.models.inference.runner import ChangeRunner, Predictor
from landsentry.models.nn.change_net import load_change_model
from landsentry.models.nn.checkpoint import load_checkpoint

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# name -> (folder under the shared data, split or SZTAKI site, layout, ground resolution in m)
SETS = {
    "val": {"levir/val": ("levir_cd", "val", LevirCD, 0.5), "egy/val": ("egy_bcd", "val", EgyBCD, 0.25),
            "sztaki/Archieve": ("sztaki_airchange", "Archieve", None, 1.5)},
    "test": {"levir/test": ("levir_cd", "test", LevirCD, 0.5), "egy/test": ("egy_bcd", "test", EgyBCD, 0.25),
             "sztaki/Szada": ("sztaki_airchange", "Szada", None, 1.5)},
}
DEFAULT_GRID = {
    "learned": {"learned_threshold": [0.3, 0.4, 0.5, 0.6, 0.7]},
    "combined": {"change_threshold": [0.05, 0.1, 0.2, 0.3, 0.5], "confident_score": [0.4, 0.6, 0.8, 1.0]},
}


def parse_grid(items: list[str]) -> dict[str, list]:
    """'name=v1,v2' items -> {name: [v1, v2]} for ChangeParams fields ('none' means None)."""
    known = {f.name for f in fields(ChangeParams)}
    grid: dict[str, list] = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in known or not values:
            raise SystemExit(f"--grid {item!r}: expected NAME=V1,V2 with NAME one of {sorted(known)}")
        grid[name] = [None if v == "none" else (int(v) if name.endswith("_px") else float(v)) for v in values.split(",")]
    return grid


def set_maps(data: Path, which: str, predictor: Predictor, runner: ChangeRunner) -> dict[str, tuple[list[PairMaps], float]]:
    """Per set: the models' maps of its pairs and its ground resolution."""
    out = {}
    for name, (folder, split, layout, gsd) in SETS[which].items():
        if layout is None:
            pairs = find_pairs(data / folder, sites=[split])
        else:
            pairs = find_pairs(data / folder, split, layout=layout)
        out[name] = ([pair_maps(b, a, l, predictor, runner, gsd) for _, b, a, l in pairs], gsd)
    return out


def score(maps: dict[str, tuple[list[PairMaps], float]], params: ChangeParams, method: str) -> dict[str, dict]:
    """Scores per set (pixels summed over its pairs) and their mean F1 under `params`."""
    per_set = {}
    for name, (pairs, gsd) in maps.items():
        total = sum(score_maps(m, params, (method,), gsd)[method] for m in pairs)
        per_set[name] = binary_scores(*map(int, total))
    return {"sets": per_set, "mean_f1": float(np.mean([s["f1"] for s in per_set.values()]))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.tune_change", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED)
    p.add_argument("--checkpoint", type=Path, default=None, help="segmentation checkpoint (default: the bundled one)")
    p.add_argument("--change-checkpoint", type=Path, default=None, help="change head (default: the bundled one)")
    p.add_argument("--sets", choices=tuple(SETS), default="val")
    p.add_argument("--methods", nargs="+", default=["class", "learned", "combined"], choices=("class", "learned", "combined"))
    p.add_argument("--grid", nargs="*", default=None, help="NAME=V1,V2 ... per ChangeParams field (default: a grid per method)")
    p.add_argument("--base", nargs="*", default=[], help="NAME=V fixed ChangeParams values the grid starts from")
    p.add_argument("--zoom", type=float, default=None, help="the change model's window zoom (default: its checkpoint's)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    base = ChangeParams(**{k: v[0] for k, v in parse_grid(args.base).items()})
    predictor = Predictor(load_checkpoint(args.checkpoint), device="cpu")
    model, ckpt = load_change_model(args.change_checkpoint)
    maps = set_maps(args.data, args.sets, predictor, ChangeRunner(model, ckpt, device="cpu", zoom=args.zoom))
    report: dict = {"sets": args.sets, "change_checkpoint": str(ckpt.path), "zoom": args.zoom, "base": base.as_dict(), "methods": {}}
    for method in args.methods:
        grid = parse_grid(args.grid) if args.grid is not None else DEFAULT_GRID.get(method, {})
        if method == "class":
            grid = {}
        rows = []
        for values in itertools.product(*grid.values()):
            params = replace(base, **dict(zip(grid, values)))
            rows.append({"params": dict(zip(grid, values)), **score(maps, params, method)})
        rows.sort(key=lambda r: -r["mean_f1"])
        report["methods"][method] = rows
        print(f"{method}: {len(rows)} setting(s) on {args.sets} sets, best first")
        for r in rows[:8]:
            sets = "  ".join(f"{n} {s['precision']:.3f}/{s['recall']:.3f}/{s['f1']:.3f}" for n, s in r["sets"].items())
            print(f"  mean F1 {r['mean_f1']:.3f}  {r['params']}  (P/R/F1) {sets}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
