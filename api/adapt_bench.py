"""`landsentry bench-adapt`: does retraining help on a place the model never saw? Plays the user, through the service's own path.

For a labelled source the base model was not trained on, it takes k whole images (k = 1, 2, 4, 8)
as the user's annotations, stores them as samples in a service data directory of its own, queues a
train job exactly as `POST /v1/train` with its defaults does (`api/retrain.queue_train_job`, the
default recipe, the parent's replay data) and runs it as the worker does (`api/train_job.run_train_job`:
`landsentry train` in a child process, then the held-out checks). It then scores the base and the new
version on images of that source no k ever used (the same images for every k), and prints a
Markdown table (IoU per class before and after, minutes, samples/s, the version's own checks),
writes it as JSON and draws it as a PNG (api/adapt_report.py).
"""
from __future__ import annotations

import argparse
import random
import shutil
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from landsentry.models.cli.options import key_values
from landsentry.models.data.registry import records_from_spec
from landsentry.models.data.samples import check_records, load_sample, record_labels
from landsentry.models.evaluation.segmentation import held_out_metrics, score_by_source, source_of
from landsentry.models.inference.runner import Predictor
from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.errors import InputError

from landsentry.api.adapt_report import markdown, plot, write_json
from landsentry.api.masks import class_pixels
from landsentry.api.retrain import DEFAULT_RECIPE, queue_train_job
from landsentry.api.settings import Settings
from landsentry.api.store import Store, new_id
from landsentry.api.train_job import run_train_job
from landsentry.api.versions import register_initial

OWNER = "bench-adapt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="landsentry bench-adapt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, required=True, help="the model to adapt (a checkpoint never trained on --data)")
    p.add_argument("--data", required=True, help="the new place: a labelled source as LAYOUT:PATH (e.g. loveda:../shared/data/loveda)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8], help="numbers of annotated images (default 1 2 4 8)")
    p.add_argument("--steps", type=int, default=None, help=f"steps per epoch (default: the service's, {DEFAULT_RECIPE.steps_per_epoch})")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs (default: the service's, {DEFAULT_RECIPE.epochs})")
    p.add_argument("--recipe", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="change the recipe (api/retrain.Recipe: lr, freeze_blocks, replay_share, batch_size ...), to compare recipes")
    p.add_argument("--eval-max", type=int, default=16, help="score at most this many of the remaining images (0: all)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for training and scoring (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="which images are annotated (a seeded shuffle)")
    p.add_argument("--work", type=Path, default=None, help="the bench's service data directory (default: OUT's stem + '.work', removed after)")
    p.add_argument("--json", type=Path, default=Path("bench-adapt.json"), help="results as JSON (default bench-adapt.json)")
    p.add_argument("--png", type=Path, default=None, help="the plot (default: the JSON's name with .png)")
    return p


def parse_recipe(pairs: list[str]) -> dict:
    changes = key_values(pairs, "--recipe")
    try:
        DEFAULT_RECIPE.with_(**changes)
    except ValueError as exc:
        raise InputError(f"--recipe: {exc}") from None
    return changes


def choose(records: list, ks: list[int], seed: int, eval_max: int) -> tuple[list, list]:
    """(annotation order, scored images): the first k of the order are the k annotations; the scored images are the
    last `eval_max` of the order (the same whatever the k list, as long as the largest k leaves them out)."""
    order = list(records)
    random.Random(seed).shuffle(order)
    pool, rest = order[: max(ks)], order[max(ks):]
    return pool, rest[-eval_max:] if eval_max else rest


def score(checkpoint: Path, images: list, sources: list[str], device: str) -> dict:
    predictor = Predictor(load_checkpoint(checkpoint), device=device, tile=512)
    metrics = held_out_metrics(score_by_source(predictor, images, sources))
    name = sources[0]
    return {"miou": metrics["sources"][name]["miou"], "iou": metrics["sources"][name]["iou"]}


def store_samples(store: Store, records: list) -> list[str]:
    """The records as the service's samples (image file copied, mask as schema ids): what a user's annotations become."""
    for sample in store.list_samples():
        store.delete_sample(sample["id"])
    ids = []
    for record in records:
        sample_id = new_id("s")
        labels, _ = record_labels(record)
        (store.samples_dir / "masks").mkdir(parents=True, exist_ok=True)
        (store.samples_dir / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels, mode="L").save(store.samples_dir / "masks" / f"{sample_id}.png")
        image_file = sample_id + Path(record.image).suffix
        shutil.copyfile(record.image, store.samples_dir / "images" / image_file)
        store.add_sample(sample_id, labels.shape[1], labels.shape[0], class_pixels(labels), f"bench:{record.source}", image_file)
        ids.append(sample_id)
    return ids


def adapt_once(store: Store, settings: Settings, base_id: str, records: list, args: argparse.Namespace, recipe: dict) -> dict:
    """One k: store the annotations, queue and run the train job as the service would; the version it registered."""
    store.set_active_model(base_id)
    store_samples(store, records)
    job = queue_train_job(store, args.epochs, args.steps, "never", DEFAULT_RECIPE.with_(**recipe))
    claimed = store.claim_job("train", OWNER) if job is not None else None
    if claimed is None:
        raise InputError("the bench's service data directory has another train job queued; use a fresh --work folder")
    started = time.perf_counter()
    run_train_job(store, settings, claimed, threading.Event())
    minutes = (time.perf_counter() - started) / 60
    done = store.get_job(claimed["id"])
    if done is None or done["status"] != "done":
        raise InputError(f"the train job failed: {(done or {}).get('error')}")
    model = store.get_model(done["result"]["model"]["id"])
    history = model["data"].get("history") or []
    rates = [h["samples_per_s"] for h in history if h.get("samples_per_s")]
    return {"model": model, "minutes": round(minutes, 2), "samples_per_s": round(float(np.mean(rates)), 2) if rates else None}


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    recipe = parse_recipe(args.recipe)
    if not args.base.is_file():
        raise InputError(f"--base {args.base}: no such checkpoint")
    records = records_from_spec(args.data)
    ks = sorted({k for k in args.k if k >= 1})
    usable = [k for k in ks if k < len(records)]
    if not usable:
        raise InputError(f"{args.data} has {len(records)} images: k must leave at least one to score (asked {ks})")
    skipped = [k for k in ks if k not in usable]
    pool, scored = choose(records, usable, args.seed, args.eval_max)
    ckpt = load_checkpoint(args.base)
    check_records(pool + scored, ckpt.in_channels)
    images = [load_sample(r, ckpt.in_channels) for r in scored]
    sources = [source_of(r.source) for r in scored]

    work = args.work or args.json.with_name(args.json.stem + ".work")
    fresh = args.work is None
    if fresh and work.exists():
        shutil.rmtree(work)
    settings = Settings.from_env(data_dir=work, worker=False, threads=max(1, args.threads), device=args.device, model=args.base)
    store = Store(settings.data_dir)
    base_id = register_initial(store, args.base)["id"]
    print(f"bench-adapt: {args.data}, {len(records)} images; base {args.base}; scoring {len(scored)} images no k uses", flush=True)
    before = score(args.base, images, sources, args.device)
    rows: list[dict] = []
    report = {"base": str(args.base), "data": args.data, "images": len(records), "scored": [r.source for r in scored],
              "skipped_k": skipped, "threads": args.threads, "recipe_changes": recipe, "rows": rows}
    try:
        for k in usable:
            print(f"k = {k}: adapting on {', '.join(r.source for r in pool[:k])} ...", flush=True)
            result = adapt_once(store, settings, base_id, pool[:k], args, recipe)
            after = score(store.model_path(result["model"]), images, sources, args.device)
            checks = result["model"]["metrics"].get("checks") or {}
            rows.append({"k": k, "annotated": [r.source for r in pool[:k]], "before": before, "after": after,
                         "gain": None if after["miou"] is None or before["miou"] is None else round(after["miou"] - before["miou"], 4),
                         "minutes": result["minutes"], "samples_per_s": result["samples_per_s"], "checks": checks,
                         "recipe": {k_: result["model"]["data"].get(k_) for k_ in
                                    ("epochs", "steps_per_epoch", "batch_size", "lr", "freeze_blocks", "bn_frozen", "keep_parent", "replay_share", "crop_size")}})
            print(markdown(rows[-1:], header=not rows[:-1]), flush=True)
            write_json(args.json, {**report, "rows": rows})  # after every k: a long run interrupted keeps what it measured
    finally:
        if fresh:
            shutil.rmtree(work, ignore_errors=True)
    report["rows"] = rows
    write_json(args.json, report)
    png = args.png or args.json.with_suffix(".png")
    plot(png, report)
    print("\n" + markdown(rows))
    if skipped:
        print(f"(k = {', '.join(map(str, skipped))} skipped: {args.data} has only {len(records)} images)")
    print(f"written: {args.json}, {png}")
    return 0
