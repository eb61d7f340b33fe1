"""`landsentry bench-train`: training throughput (samples/s) of a recipe on this machine, warm-up excluded.

It runs the real `landsentry train` for one short epoch on the recipe's own data (no validation), reads
the step lines of its progress file (`training/progress.py`) and prints the rate between the end of
the warm-up steps and the last step: data loading, augmentation, forward, loss, backward and the
optimiser step, as a full run pays them.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from landsentry.models.cli.options import key_values
from landsentry.models.vocabulary.errors import InputError
from landsentry.training import train
from landsentry.training.config import read_config_file


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry bench-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="a training recipe (TOML/JSON, as `landsentry train --config`)")
    p.add_argument("--steps", type=int, default=40, help="measured steps (default 40)")
    p.add_argument("--warmup", type=int, default=5, help="steps not measured first (default 5)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override recipe options, e.g. freeze_blocks=0 channels_last=false")
    return p


def overrides(pairs: list[str]) -> dict:
    """KEY=VALUE strings -> options, values read as JSON where they parse (numbers, true/false), else text."""
    out = {}
    for key, value in key_values(pairs, "--set").items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def measure(config: dict, steps: int, warmup: int) -> dict:
    """Run one epoch of warmup + steps; samples/s over the measured steps (from the progress file)."""
    with tempfile.TemporaryDirectory(prefix="landsentry-bench-train-") as tmp:
        total = warmup + steps
        recipe = {**config, "epochs": 1, "max_steps_per_epoch": total, "samples_per_epoch": total * int(config.get("batch_size", 8)),
                  "holdout": [], "val_data": [], "out": str(Path(tmp) / "run"), "progress_file": str(Path(tmp) / "progress.jsonl"),
                  "warmup_steps": 1}
        path = Path(tmp) / "recipe.json"
        path.write_text(json.dumps(recipe))
        code = train.main(["--config", str(path)])
        if code:
            raise InputError(f"the training run failed (exit {code})")
        lines = [json.loads(l) for l in (Path(tmp) / "progress.jsonl").read_text().splitlines()]
    marks = [(l["step"], l["elapsed_s"]) for l in lines if l["event"] == "step" and l["step"] >= warmup]
    if len(marks) < 2:
        raise InputError("too few measured steps: raise --steps")
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    batch = int(recipe["batch_size"]) if "batch_size" in recipe else 8
    return {"samples_per_s": round((s1 - s0) * batch / (t1 - t0), 2), "steps_measured": s1 - s0, "batch_size": batch,
            "crop_size": recipe.get("crop_size", 256), "threads": torch.get_num_threads()}


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 2 or args.warmup < 0:
        raise InputError("--steps must be at least 2 and --warmup at least 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = {**read_config_file(args.config), **overrides(args.set)}
    if args.threads:
        config["threads"] = args.threads
    result = measure(config, args.steps, args.warmup)
    print(f"training throughput: {result['samples_per_s']:.1f} samples/s ({result['steps_measured']} steps of "
          f"{result['batch_size']} crops of {result['crop_size']}², {result['threads']} threads, warm-up excluded)")
    print(json.dumps(result))
    return 0
