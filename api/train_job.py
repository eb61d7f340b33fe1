"""Train jobs: fine-tune the active model on the stored samples with `landsentry train`, in its own process.

The request snapshots the samples into `JOB/data/{train,val}` (hard links, `folder:` layout: masks
hold schema ids) and fixes the parent version. The worker writes the run's options to
`JOB/train.json` (the `--config` file format of `landsentry train`) and runs `landsentry train
--config JOB/train.json` in the job's folder with one CPU thread (inference keeps the other core),
mixing in the parent's own training data as replay where those folders exist on this machine. The
run reports progress, and the reason it failed, as JSON lines in `JOB/run/progress.jsonl`
(api/train_progress.py). Every epoch it writes `JOB/run/last.pt` atomically, so a job interrupted by
a restart resumes from its last finished epoch (`--resume`). Before the version is registered it is
checked beside its parent (api/train_checks.py): on the user's held-out samples (api/retrain.py says
which) and on the parent's validation data; the job's `activate` rule may then switch it on. A
cancelled job's child process is terminated within a second or so, and its files are removed.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable

from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.errors import LandsentryError

from landsentry.api.db import DatabaseError
from landsentry.api.heartbeat import Heartbeat
from landsentry.api.proc import python_module, run_child
from landsentry.api.retrain import DEFAULT_RECIPE, Recipe, has_held_out, held_out_description
from landsentry.api.settings import Settings
from landsentry.api.store import Store, atomic_copy, atomic_write_bytes
from landsentry.api.train_checks import decide, evaluate, mix_with_parent, parent_validation, replay_holdout
from landsentry.api.train_progress import failure_reason, last_event, progress_of

# Relative dataset paths in a checkpoint's metadata are as `landsentry train` saw them, run from a
# checkout; an installed wheel has no such folders, and replay then skips them.
CHECKOUT = Path(__file__).resolve().parents[1]


def job_recipe(params: dict) -> Recipe:
    """The recipe a job was queued with (jobs queued before recipes were recorded: the default's knobs, their epochs and steps)."""
    stored = params.get("recipe") or {}
    return DEFAULT_RECIPE.with_(**{**stored, "epochs": params["epochs"], "steps_per_epoch": params["steps_per_epoch"]})


def replay_specs(settings: Settings, parent_file: Path) -> list[str]:
    """The parent's own training data (`layout:path` specs from its metadata, lineage followed through
    earlier fine-tunes) that exists here; `settings.replay` overrides. Sample snapshots are skipped."""
    if settings.replay is not None:
        return list(settings.replay)
    meta = load_checkpoint(parent_file).metadata
    data = meta.get("data") or {}
    specs = []
    for spec in [*(data.get("data") or []), *(data.get("replay") or [])]:
        layout, sep, path = spec.partition(":")
        if not sep:
            continue
        where = Path(path) if Path(path).is_absolute() else CHECKOUT / path
        if where.is_dir() and settings.data_dir not in where.resolve().parents:
            specs.append(f"{layout}:{where.resolve()}")
    return list(dict.fromkeys(specs))


def progress_file(job_dir: Path) -> Path:
    """Where the run reports progress (training/progress.py's JSON lines)."""
    return job_dir / "run" / "progress.jsonl"


def train_config(job_dir: Path, parent_file: Path, params: dict, replay: list[str], threads: int, device: str) -> dict:
    """The options of the run, as `landsentry train --config` reads them (training/config.py names them)."""
    arch = load_checkpoint(parent_file).arch
    recipe = job_recipe(params)
    config = {
        "init_from": str(parent_file), "data": [f"folder:{job_dir / 'data' / 'train'}"], "out": str(job_dir / "run"),
        "arch": arch["name"], "in_channels": arch["in_channels"],
        "decoder_channels": list(arch.get("decoder_channels", [128, 64, 32, 16])),
        "epochs": recipe.epochs, "max_steps_per_epoch": recipe.steps_per_epoch,
        "samples_per_epoch": recipe.steps_per_epoch * recipe.batch_size, "batch_size": recipe.batch_size,
        "crop_size": params["crop_size"], "lr": recipe.lr, "warmup_steps": recipe.warmup_steps, "freeze_blocks": recipe.freeze_blocks,
        "bn_frozen": recipe.bn_frozen, "threads": threads, "workers": 0, "device": device, "pretrained": False, "eval_tile": 512,
        "progress_file": str(progress_file(job_dir)), "note": f"fine-tuned by the landsentry service, job {job_dir.name}",
    }
    if has_held_out(params):
        config["val_data"] = [f"folder:{job_dir / 'data' / 'val'}"]
    if replay and recipe.replay_share > 0:
        config.update(replay=list(replay), replay_share=recipe.replay_share, replay_holdout=replay_holdout(parent_file))
    return config


def train_command(job_dir: Path, parent_file: Path, params: dict, replay: list[str], threads: int, device: str) -> list[str]:
    """`landsentry train --config JOB/train.json`; once an epoch is saved, `--resume JOB/run/last.pt`
    (the run's options, progress file included, are stored in that checkpoint)."""
    last = job_dir / "run" / "last.pt"
    if last.is_file():
        return python_module("landsentry", "train", "--resume", str(last), "--threads", str(threads))
    config = job_dir / "train.json"
    options = train_config(job_dir, parent_file, params, replay, threads, device)
    atomic_write_bytes(config, json.dumps(options, indent=1).encode())
    return python_module("landsentry", "train", "--config", str(config))


def evaluate_parent(job_dir: Path, parent_file: Path, threads: int, device: str, stop: threading.Event,
                    cancelled: Callable[[], bool] | None = None) -> dict | None:
    """The parent's IoU on the same held-out samples, with `landsentry evaluate` (for comparison)."""
    scores = evaluate(parent_file, [f"folder:{job_dir / 'data' / 'val'}"], None, job_dir / "run" / "parent_eval.json",
                      threads, device, stop, cancelled)
    return None if scores is None else {k: scores[k] for k in ("miou", "iou", "pixel_accuracy")}


def run_train_job(store: Store, settings: Settings, job: dict, stop: threading.Event, beat: Heartbeat | None = None) -> None:
    """Run (or resume) one train job to a registered model version, or fail it with a reason. With `beat` (the
    worker's heartbeat), every change is guarded by its lease; a lost lease stops the run and leaves the job's
    files to the worker that took it over (it resumes from the last finished epoch)."""
    job_dir, params = store.job_dir(job["id"]), job["params"]
    owner = beat.owner if beat is not None else None
    parent = store.get_model(params["parent"])
    if parent is None:
        store.fail_job(job["id"], f"its parent model version {params['parent']} is gone", owner)
        return
    parent_file = store.model_path(parent)
    run = job_dir / "run"
    model_id = "m_" + job["id"].split("_", 1)[1]

    def cancelled() -> bool:
        """Stopped: cancelled, or (with a heartbeat) no longer this worker's."""
        return (beat is not None and beat.lost(job["id"])) or store.is_cancelled(job["id"])

    def stopped() -> bool:
        """Whether to stop here; a cancelled job's files are removed, a lost one's left to its new owner."""
        if cancelled():
            if store.is_cancelled(job["id"]):
                store.discard_files(job["id"])
            return True
        return stop.is_set()  # shutting down: the job stays running and is resumed after the restart or lease

    try:
        if store.get_model(model_id) is None:
            replay = params.get("replay")
            if replay is None:
                replay = replay_specs(settings, parent_file)
                store.update_job(job["id"], owner, params={**params, "replay": replay})
            resumed = (run / "last.pt").is_file()
            store.update_job(job["id"], owner, message="resuming from the last finished epoch" if resumed else "starting")
            cmd = train_command(job_dir, parent_file, params, replay, settings.threads, settings.device)

            def poll() -> bool:
                seen = progress_of(last_event(progress_file(job_dir)))
                if seen is not None:
                    store.update_job(job["id"], owner, progress=round(0.95 * seen[0], 4), message=seen[1])
                return cancelled()

            code = run_child(cmd, run / "train.out", settings.threads, stop, cwd=job_dir, on_poll=poll)
            if stopped():
                return
            if code != 0:
                reason = failure_reason(last_event(progress_file(job_dir)))
                store.fail_job(job["id"], f"training failed (exit {code}): {reason}", owner)
                return
            register_version(store, settings, job, parent, model_id, replay, stop, cancelled)
            if stopped():
                return
        store.finish_job(job["id"], {"model": _public(store, model_id)}, message=f"done: new model version {model_id}", holder=owner)
    except DatabaseError:
        raise  # nothing can be recorded: the worker says so, the lease runs out, the job resumes
    except LandsentryError as exc:
        store.fail_job(job["id"], str(exc), owner)


def _public(store: Store, model_id: str) -> dict:
    from landsentry.api.public import public_model

    return public_model(store.get_model(model_id), store.active_model_id())  # type: ignore[arg-type]


def register_version(store: Store, settings: Settings, job: dict, parent: dict, model_id: str, replay: list[str], stop: threading.Event,
                     cancelled: Callable[[], bool] | None = None) -> None:
    """Check the trained checkpoint beside its parent, copy it into the store, record it, and apply the activation rule."""
    job_dir, params = store.job_dir(job["id"]), job["params"]
    run = job_dir / "run"
    best = run / "best.pt" if (run / "best.pt").is_file() else run / "last.pt"
    ckpt = load_checkpoint(best)
    recipe = job_recipe(params)
    parent_file = store.model_path(parent)
    if recipe.keep_parent > 0:
        best = mix_with_parent(best, parent_file, recipe.keep_parent, run / "mixed.pt")

    def halted() -> bool:
        return stop.is_set() or (cancelled is not None and cancelled())

    store.update_job(job["id"], job.get("owner"), progress=0.96, message="scoring the parent on the same held-out samples")
    metrics: dict = {"miou": None, "evaluated_on": "nothing: no labelled pixels could be held out"}
    samples_check: dict = {"evaluated_on": metrics["evaluated_on"], "new": None, "parent": None}
    if has_held_out(params):
        own = ckpt.metadata.get("metrics") or {}
        if recipe.keep_parent > 0:  # the mixed weights were never scored by the training run
            own = evaluate(best, [f"folder:{job_dir / 'data' / 'val'}"], None, run / "mixed_eval.json", settings.threads,
                           settings.device, stop, cancelled) or {}
        metrics = {k: own.get(k) for k in ("miou", "iou", "pixel_accuracy")}
        metrics["evaluated_on"] = held_out_description(params)
        metrics["parent"] = evaluate_parent(job_dir, parent_file, settings.threads, settings.device, stop, cancelled)
        samples_check = {"evaluated_on": metrics["evaluated_on"], "new": {k: metrics[k] for k in ("miou", "iou")},
                         "parent": {k: (metrics["parent"] or {}).get(k) for k in ("miou", "iou")} if metrics["parent"] else None}
    if halted():
        return
    store.update_job(job["id"], job.get("owner"), progress=0.98, message="scoring both versions on the parent's validation data")
    validation = parent_validation(parent_file, best, run, settings.threads, settings.device, stop, cancelled)
    if halted():
        return
    metrics["checks"] = {"samples": samples_check, "parent_validation": validation}
    rule = params.get("activate") or "never"
    activate, why = (decide(metrics["checks"], settings.activate_tolerance) if rule == "if_not_worse"
                     else (False, "not activated: compare, then activate it by hand"))
    metrics["activation"] = {"rule": rule, "tolerance": settings.activate_tolerance, "activated": activate, "reason": why}
    data = {"samples": params["train"], "held_out": params["val"], "held_out_rows": params.get("held_out_rows") or {},
            "replay": replay, "replay_share": recipe.replay_share if replay else 0.0, "epochs": recipe.epochs,
            "steps_per_epoch": recipe.steps_per_epoch, "batch_size": recipe.batch_size, "crop_size": params["crop_size"],
            "lr": recipe.lr, "freeze_blocks": recipe.freeze_blocks, "bn_frozen": recipe.bn_frozen,
            "keep_parent": recipe.keep_parent, "best_epoch": ckpt.metadata.get("epoch"),
            "history": ckpt.metadata.get("history") or []}
    atomic_copy(best, store.models_dir / f"{model_id}.pt")
    name = f"{parent['name'].split(' +')[0]} + {len(params['train']) + len(params['val'])} samples"
    store.add_model(model_id, name, parent["id"], f"{model_id}.pt", data, metrics, job["id"])
    if activate:
        store.set_active_model(model_id)
