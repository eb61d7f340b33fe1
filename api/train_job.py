"""Train jobs: fine-tune the active model on the stored samples with `landsentry train`, in its own process.

The request snapshots the samples into `JOB/data/{train,val}` (hard links, `folder:` layout: masks
hold schema ids) and fixes the parent version. The worker runs `landsentry train --init-from
PARENT` on them with one CPU thread (inference keeps the other core), mixing in the parent's own
training data as replay where those folders exist on this machine. Every epoch the training
command writes `JOB/run/last.pt` atomically, so a job interrupted by a restart resumes from its last
finished epoch. Metrics: per-class IoU of the new weights on the held-out samples (whole images),
and the parent's IoU on the same samples for comparison.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from landsentry.models.nn.checkpoint import load_checkpoint
from landsentry.models.vocabulary.errors import LandsentryError

from landsentry.api.settings import Settings
from landsentry.api.store import Store, atomic_copy

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZE = 4
MAX_CROP = 256
FINE_TUNE_LR = 5e-4
REPLAY_SHARE = 0.3
DEFAULT_EPOCHS = 2
DEFAULT_STEPS = 20
_TQDM = re.compile(r"epoch (\d+):\s+(\d+)%")


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
        where = Path(path) if Path(path).is_absolute() else ROOT / path
        if where.is_dir() and settings.data_dir not in where.resolve().parents:
            specs.append(f"{layout}:{where.resolve()}")
    return list(dict.fromkeys(specs))


def crop_size(samples: list[dict]) -> int:
    """Training crops: at most 256 px, no larger than the smallest sample (padding covers the rest)."""
    side = min(min(s["width"], s["height"]) for s in samples)
    return max(64, min(MAX_CROP, side // 32 * 32))


def train_command(job_dir: Path, parent_file: Path, params: dict, replay: list[str], threads: int, device: str) -> list[str]:
    run = job_dir / "run"
    last = run / "last.pt"
    base = [sys.executable, "-m", "landsentry", "train"]
    if last.is_file():
        return base + ["--resume", str(last), "--threads", str(threads)]
    arch = load_checkpoint(parent_file).arch
    cmd = base + [
        "--init-from", str(parent_file), "--data", f"folder:{job_dir / 'data' / 'train'}", "--out", str(run),
        "--arch", arch["name"], "--in-channels", str(arch["in_channels"]),
        "--decoder-channels", *[str(c) for c in arch.get("decoder_channels", [128, 64, 32, 16])],
        "--epochs", str(params["epochs"]), "--max-steps-per-epoch", str(params["steps_per_epoch"]),
        "--samples-per-epoch", str(params["steps_per_epoch"] * BATCH_SIZE), "--batch-size", str(BATCH_SIZE),
        "--crop-size", str(params["crop_size"]), "--lr", str(FINE_TUNE_LR), "--warmup-steps", "2",
        "--threads", str(threads), "--workers", "0", "--device", device, "--no-pretrained", "--eval-tile", "512",
        "--note", f"fine-tuned by the landsentry service, job {job_dir.name}",
    ]
    if params["val"]:
        cmd += ["--val-data", f"folder:{job_dir / 'data' / 'val'}"]
    if replay:
        cmd += ["--replay", *replay, "--replay-share", str(REPLAY_SHARE)]
    return cmd


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def progress_of(run: Path, epochs: int) -> tuple[float, str]:
    """(0..1, message) from the epochs finished (history.json) and the running epoch's progress bar."""
    done = 0
    history = run / "history.json"
    if history.is_file():
        try:
            done = len(json.loads(history.read_text()))
        except ValueError:
            pass
    fraction = 0.0
    log = run / "train.out"
    if log.is_file():
        with log.open("rb") as fh:
            fh.seek(max(0, log.stat().st_size - 4000))
            matches = _TQDM.findall(fh.read().decode("utf-8", "replace"))
        if matches and int(matches[-1][0]) == done + 1:
            fraction = int(matches[-1][1]) / 100
    current = min(done + 1, epochs)
    return min(1.0, (done + fraction) / epochs), f"epoch {current}/{epochs}" if done < epochs else "evaluating"


def run_child(cmd: list[str], log: Path, threads: int, stop: threading.Event, on_poll=None) -> int:
    """Run a command with output appended to `log`; killed with its parent (Linux) or when `stop` is set."""
    from landsentry.api.proc import die_with_parent

    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env(threads), cwd=ROOT,
                                preexec_fn=die_with_parent)
        try:
            while proc.poll() is None:
                if stop.wait(0.5):
                    proc.terminate()
                    proc.wait(10)
                    break
                if on_poll:
                    on_poll()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode


def failure_reason(log: Path) -> str:
    """The training command's own error line (it prints one for bad data), else the last output line."""
    lines = [l for l in log.read_text(errors="replace").replace("\r", "\n").splitlines() if l.strip()] if log.is_file() else []
    errors = [l for l in lines if "error:" in l]
    return (errors[-1] if errors else (lines[-1] if lines else "no output"))[:500]


def evaluate_parent(job_dir: Path, parent_file: Path, threads: int, device: str, stop: threading.Event) -> dict | None:
    """The parent's IoU on the same held-out samples, with `landsentry evaluate` (for comparison)."""
    out = job_dir / "run" / "parent_eval.json"
    if not out.is_file():
        cmd = [sys.executable, "-m", "landsentry", "evaluate", "--checkpoint", str(parent_file),
               "--data", f"folder:{job_dir / 'data' / 'val'}", "--device", device, "--json", str(out)]
        if run_child(cmd, job_dir / "run" / "evaluate.out", threads, stop) != 0 or not out.is_file():
            return None
    scores = json.loads(out.read_text())
    return {k: scores.get(k) for k in ("miou", "iou", "pixel_accuracy")}


def run_train_job(store: Store, settings: Settings, job: dict, stop: threading.Event) -> None:
    """Run (or resume) one train job to a registered model version, or fail it with a reason."""
    job_dir, params = store.job_dir(job["id"]), job["params"]
    parent = store.get_model(params["parent"])
    if parent is None:
        store.fail_job(job["id"], f"its parent model version {params['parent']} is gone")
        return
    parent_file = store.model_path(parent)
    run = job_dir / "run"
    model_id = "m_" + job["id"].split("_", 1)[1]
    try:
        if store.get_model(model_id) is None:
            replay = params.get("replay")
            if replay is None:
                replay = replay_specs(settings, parent_file)
                store.update_job(job["id"], params={**params, "replay": replay})
            resumed = (run / "last.pt").is_file()
            store.update_job(job["id"], message="resuming from the last finished epoch" if resumed else "starting")
            cmd = train_command(job_dir, parent_file, params, replay, settings.threads, settings.device)

            def poll() -> None:
                progress, message = progress_of(run, params["epochs"])
                store.update_job(job["id"], progress=round(0.95 * progress, 4), message=message)

            code = run_child(cmd, run / "train.out", settings.threads, stop, poll)
            if stop.is_set():
                return  # shutting down: the job stays running and is resumed after the restart
            if code != 0:
                store.fail_job(job["id"], f"training failed (exit {code}): {failure_reason(run / 'train.out')}")
                return
            register_version(store, settings, job, parent, model_id, replay, stop)
            if stop.is_set():
                return
        store.finish_job(job["id"], {"model": _public(store, model_id)}, message=f"done: new model version {model_id}")
    except LandsentryError as exc:
        store.fail_job(job["id"], str(exc))


def _public(store: Store, model_id: str) -> dict:
    from landsentry.api.public import public_model

    return public_model(store.get_model(model_id), store.active_model_id())  # type: ignore[arg-type]


def register_version(store: Store, settings: Settings, job: dict, parent: dict, model_id: str, replay: list[str], stop: threading.Event) -> None:
    """Copy the trained checkpoint into the store and record it with parent, data and metrics."""
    job_dir, params = store.job_dir(job["id"]), job["params"]
    run = job_dir / "run"
    best = run / "best.pt" if (run / "best.pt").is_file() else run / "last.pt"
    ckpt = load_checkpoint(best)
    store.update_job(job["id"], progress=0.96, message="scoring the parent on the same held-out samples")
    metrics: dict = {"miou": None, "evaluated_on": "nothing: fewer than 2 samples, so none could be held out"}
    if params["val"]:
        own = ckpt.metadata.get("metrics") or {}
        metrics = {k: own.get(k) for k in ("miou", "iou", "pixel_accuracy")}
        metrics["evaluated_on"] = f"{len(params['val'])} held-out sample(s) (whole images, not trained on): {', '.join(params['val'])}"
        metrics["parent"] = evaluate_parent(job_dir, store.model_path(parent), settings.threads, settings.device, stop)
        if stop.is_set():
            return
    data = {"samples": params["train"], "held_out": params["val"], "replay": replay,
            "replay_share": REPLAY_SHARE if replay else 0.0, "epochs": params["epochs"],
            "steps_per_epoch": params["steps_per_epoch"], "batch_size": BATCH_SIZE, "crop_size": params["crop_size"],
            "best_epoch": ckpt.metadata.get("epoch")}
    atomic_copy(best, store.models_dir / f"{model_id}.pt")
    name = f"{parent['name'].split(' +')[0]} + {len(params['train']) + len(params['val'])} samples"
    store.add_model(model_id, name, parent["id"], f"{model_id}.pt", data, metrics, job["id"])
