"""Train jobs: fine-tune the active model on the stored samples with `landsentry train`, in its own process.

The request snapshots the samples into `JOB/data/{train,val}` (hard links, `folder:` layout: masks
hold schema ids) and fixes the parent version. The worker writes the run's options to
`JOB/train.json` (the `--config` file format of `landsentry train`) and runs `landsentry train
--config JOB/train.json` in the job's folder with one CPU thread (inference keeps the other core),
mixing in the parent's own training data as replay where those folders exist on this machine. The
run reports progress, and the reason it failed, as JSON lines in `JOB/run/progress.jsonl`
(api/train_progress.py). Every epoch it writes `JOB/run/last.pt` atomically, so a job interrupted by
a restart resumes from its last finished epoch (`--resume`). Metrics: per-class IoU of the new
weights on the held-out samples (whole images), and the parent's IoU on the same samples. A cancelled
job's child process is terminated within a second or so, and its files are removed.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable

from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.errors import LandsentryError

from landsentry.api.db import DatabaseError
from landsentry.api.heartbeat import Heartbeat
from landsentry.api.proc import python_module, run_child
from landsentry.api.settings import Settings
from landsentry.api.store import Store, atomic_copy, atomic_write_bytes
from landsentry.api.train_progress import failure_reason, last_event, progress_of

# Relative dataset paths in a checkpoint's metadata are as `landsentry train` saw them, run from a
# checkout; an installed wheel has no such folders, and replay then skips them.
CHECKOUT = Path(__file__).resolve().parents[1]
BATCH_SIZE = 4
MAX_CROP = 256
FINE_TUNE_LR = 5e-4
REPLAY_SHARE = 0.3
DEFAULT_EPOCHS = 2
DEFAULT_STEPS = 20


def held_out(ids: list[str]) -> list[str]:
    """About one sample in five (at least one, when there are two or more) is kept for validation."""
    return [s for i, s in enumerate(ids) if len(ids) >= 2 and i % 5 == 1]


def snapshot_samples(store: Store, job_dir: Path, samples: list[dict]) -> tuple[list[str], list[str]]:
    """Hard-link the samples into JOB/data/{train,val}: later deletions cannot change a queued run."""
    ids = [s["id"] for s in samples]
    val = set(held_out(ids))
    for sample in samples:
        split = "val" if sample["id"] in val else "train"
        for sub, name in (("images", sample["image_file"]), ("masks", f"{sample['id']}.png")):
            dst = job_dir / "data" / split / sub / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            src = store.samples_dir / sub / name
            try:
                os.link(src, dst)
            except OSError:
                atomic_copy(src, dst)
    return [i for i in ids if i not in val], [i for i in ids if i in val]


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


def crop_size(samples: list[dict]) -> int:
    """Training crops: at most 256 px, no larger than the smallest sample (padding covers the rest)."""
    side = min(min(s["width"], s["height"]) for s in samples)
    return max(64, min(MAX_CROP, side // 32 * 32))


def progress_file(job_dir: Path) -> Path:
    """Where the run reports progress (training/progress.py's JSON lines)."""
    return job_dir / "run" / "progress.jsonl"


def train_config(job_dir: Path, parent_file: Path, params: dict, replay: list[str], threads: int, device: str) -> dict:
    """The options of the run, as `landsentry train --config` reads them (training/config.py names them)."""
    arch = load_checkpoint(parent_file).arch
    config = {
        "init_from": str(parent_file), "data": [f"folder:{job_dir / 'data' / 'train'}"], "out": str(job_dir / "run"),
        "arch": arch["name"], "in_channels": arch["in_channels"],
        "decoder_channels": list(arch.get("decoder_channels", [128, 64, 32, 16])),
        "epochs": params["epochs"], "max_steps_per_epoch": params["steps_per_epoch"],
        "samples_per_epoch": params["steps_per_epoch"] * BATCH_SIZE, "batch_size": BATCH_SIZE,
        "crop_size": params["crop_size"], "lr": FINE_TUNE_LR, "warmup_steps": 2,
        "threads": threads, "workers": 0, "device": device, "pretrained": False, "eval_tile": 512,
        "progress_file": str(progress_file(job_dir)), "note": f"fine-tuned by the landsentry service, job {job_dir.name}",
    }
    if params["val"]:
        config["val_data"] = [f"folder:{job_dir / 'data' / 'val'}"]
    if replay:
        config.update(replay=list(replay), replay_share=REPLAY_SHARE)
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
    out = job_dir / "run" / "parent_eval.json"
    if not out.is_file():
        cmd = python_module("landsentry", "evaluate", "--checkpoint", str(parent_file),
                            "--data", f"folder:{job_dir / 'data' / 'val'}", "--device", device, "--json", str(out))
        if run_child(cmd, job_dir / "run" / "evaluate.out", threads, stop, cwd=job_dir, on_poll=cancelled) != 0 or not out.is_file():
            return None
    scores = json.loads(out.read_text())
    return {k: scores.get(k) for k in ("miou", "iou", "pixel_accuracy")}


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
    """Copy the trained checkpoint into the store and record it with parent, data and metrics."""
    job_dir, params = store.job_dir(job["id"]), job["params"]
    run = job_dir / "run"
    best = run / "best.pt" if (run / "best.pt").is_file() else run / "last.pt"
    ckpt = load_checkpoint(best)
    store.update_job(job["id"], job.get("owner"), progress=0.96, message="scoring the parent on the same held-out samples")
    metrics: dict = {"miou": None, "evaluated_on": "nothing: fewer than 2 samples, so none could be held out"}
    if params["val"]:
        own = ckpt.metadata.get("metrics") or {}
        metrics = {k: own.get(k) for k in ("miou", "iou", "pixel_accuracy")}
        metrics["evaluated_on"] = f"{len(params['val'])} held-out sample(s) (whole images, not trained on): {', '.join(params['val'])}"
        metrics["parent"] = evaluate_parent(job_dir, store.model_path(parent), settings.threads, settings.device, stop, cancelled)
        if stop.is_set() or (cancelled is not None and cancelled()):
            return
    data = {"samples": params["train"], "held_out": params["val"], "replay": replay,
            "replay_share": REPLAY_SHARE if replay else 0.0, "epochs": params["epochs"],
            "steps_per_epoch": params["steps_per_epoch"], "batch_size": BATCH_SIZE, "crop_size": params["crop_size"],
            "best_epoch": ckpt.metadata.get("epoch")}
    atomic_copy(best, store.models_dir / f"{model_id}.pt")
    name = f"{parent['name'].split(' +')[0]} + {len(params['train']) + len(params['val'])} samples"
    store.add_model(model_id, name, parent["id"], f"{model_id}.pt", data, metrics, job["id"])
