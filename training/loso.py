"""`landsentry loso --config RECIPE`: the leave-one-source-out table of a training recipe.

For each source S of the recipe's `data`, train the recipe without S (same schedule, or a shorter
one with --epochs/--samples-per-epoch) and score that model on all of S's images: how the recipe
does on a place it has never seen. A source whose layout labels only some classes (road-only) is
scored on what it labels. The table goes to OUT/loso.json and is printed as Markdown; each run
keeps its checkpoints in OUT/without-S/, so an interrupted table resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from landsentry.models.data.registry import parse_spec, records_from_spec
from landsentry.models.data.samples import load_sample
from landsentry.models.evaluation.segmentation import held_out_metrics, score_by_source, source_of
from landsentry.models.inference.runner import Predictor
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.classes import CLASS_NAMES
from landsentry.models.vocabulary.errors import InputError
from landsentry.training import train
from landsentry.training.config import read_config_file


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry loso", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="the training recipe (TOML/JSON, as `landsentry train --config`)")
    p.add_argument("--out", type=Path, required=True, help="folder for the runs and loso.json")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (a shorter table)")
    p.add_argument("--samples-per-epoch", type=int, default=None, help="override the recipe's samples per epoch")
    p.add_argument("--sources", nargs="*", default=None, help="only these sources (layout names), default all of the recipe's")
    p.add_argument("--threads", type=int, default=None)
    return p


def recipe_without(recipe: dict, index: int, out: Path, epochs: int | None, samples: int | None) -> dict:
    """The recipe with its `index`-th data spec (and that spec's weight) left out, writing into `out`."""
    data = [d for i, d in enumerate(recipe["data"]) if i != index]
    weights = [w for i, w in enumerate(recipe.get("data_weights", [])) if i != index]
    run = {**recipe, "data": data, "data_weights": weights, "out": str(out), "progress_file": str(out / "progress.jsonl")}
    if epochs:
        run["epochs"] = epochs
    if samples:
        run["samples_per_epoch"] = samples
    if "holdout" in run:  # groups of the left-out source no longer exist in the data
        run["holdout"] = [g for g in run["holdout"] if not g.startswith(parse_spec(recipe["data"][index])[0].name + "/")]
    return run


def score_source(checkpoint: Path, spec: str) -> dict:
    """Held-out metrics of a checkpoint on every image of one source."""
    ckpt = load_checkpoint(checkpoint)
    records = records_from_spec(spec)
    images = [load_sample(r, ckpt.in_channels) for r in records]
    predictor = Predictor(ckpt, device="auto", tile=512)
    zoom = predictor.zoom_for(parse_spec(spec)[0].gsd)  # as predict resamples an input of the source's resolution
    return held_out_metrics(score_by_source(predictor, images, [source_of(r.source) for r in records], zooms=[zoom] * len(images)))


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = read_config_file(args.config)
    specs = list(recipe.get("data", []))
    if len(specs) < 2:
        raise InputError("a leave-one-source-out table needs a recipe with at least two data sources")
    names = [parse_spec(s)[0].name for s in specs]
    wanted = set(args.sources or names)
    table_path = args.out / "loso.json"
    table = json.loads(table_path.read_text()) if table_path.is_file() else {}
    for i, (spec, name) in enumerate(zip(specs, names)):
        if name not in wanted or name in table:
            continue
        out = args.out / f"without-{name}"
        run = recipe_without(recipe, i, out, args.epochs, args.samples_per_epoch)
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(json.dumps(run, indent=1))
        resume = out / "last.pt"
        code = train.main(["--resume", str(resume)] if resume.is_file() else ["--config", str(out / "recipe.json")])
        if code:
            raise InputError(f"training without {name} failed (exit {code})")
        best = out / "best.pt" if (out / "best.pt").is_file() else resume
        metrics = score_source(best, spec)["sources"][name]
        table[name] = {"miou": metrics["miou"], "iou": metrics["iou"], "checkpoint": str(best), "trained_on": run["data"]}
        args.out.mkdir(parents=True, exist_ok=True)
        table_path.write_text(json.dumps(table, indent=1))
    print("| held-out source (never trained on) | mIoU | " + " | ".join(CLASS_NAMES[1:]) + " |")
    print("|---|---|" + "---|" * (len(CLASS_NAMES) - 1))
    for name, row in table.items():
        cells = ["–" if row["iou"].get(c) is None else f"{row['iou'][c]:.3f}" for c in CLASS_NAMES[1:]]
        print(f"| {name} | {row['miou']:.3f} | " + " | ".join(cells) + " |")
    return 0
