"""The worker process: runs queued jobs outside the request path.

Started by the server (`python -m landsentry.api.worker --settings DATA/worker-settings.json`, in the
data directory) and killed with it. Interpret jobs (large inputs) run in two lanes, each one job at
a time with the active model: the small lane takes only jobs up to LANDSENTRY_SMALL_JOB_MAX_PIXELS,
the other any job, oldest first - so one user's huge scene never makes everyone's small jobs wait.
Another thread runs train jobs, each as a `landsentry train` child process with one CPU thread, so
inference stays responsive while training. A cancelled job stops within seconds (api/cancel.py).

Every claimed job is leased and its lease renewed (api/heartbeat.py); the worker also sweeps jobs whose
leases ran out, so with replicas on PostgreSQL a job whose worker died is taken over by another
worker. With SQLite, an exclusive lock on `DATA/worker.lock` keeps a second worker from ever claiming
jobs beside it; with PostgreSQL, any number of workers claim side by side (SKIP LOCKED).
"""
from __future__ import annotations

import argparse
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from landsentry.api.db import DatabaseError
from landsentry.api.heartbeat import Heartbeat, process_owner, sweep
from landsentry.api.settings import Settings
from landsentry.api.store import Store

POLL_S = 0.3
PROGRESS_EVERY_S = 0.5


def replica_dir(settings: Settings) -> Path:
    """Where this server keeps its worker's settings and log: the data directory itself (SQLite, one server),
    or a folder per replica (host and server pid) when replicas share the data directory."""
    if not settings.database_url:
        return settings.data_dir
    folder = settings.data_dir / "replicas" / f"{socket.gethostname()}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def spawn(settings: Settings) -> subprocess.Popen:
    """Start the worker for the server, in the data directory; it dies with the server (see api.proc)."""
    from landsentry.api.proc import python_module, start_child

    where = replica_dir(settings)
    settings_file = where / "worker-settings.json"
    settings_file.write_text(settings.worker_json())
    extra = {"LANDSENTRY_DATABASE_URL": settings.database_url} if settings.database_url else {}
    with (where / "worker.log").open("ab") as log:
        return start_child(python_module("landsentry.api.worker", "--settings", str(settings_file)), log,
                           settings.threads, cwd=settings.data_dir, extra_env=extra)


def claim(store: Store, settings: Settings, stop: threading.Event, beat: Heartbeat, type_: str, max_pixels: int | None = None) -> dict | None:
    """The next job of a type, leased to this worker and held by its heartbeat; None (after a pause) when
    there is none or the database is away for a moment."""
    try:
        job = store.claim_job(type_, beat.owner, max_pixels, settings.lease_s)
    except DatabaseError as exc:
        print(f"worker: {exc}; trying again", flush=True)
        job = None
    if job is None:
        stop.wait(POLL_S)
        return None
    beat.hold(job["id"])
    return job


def interpret_loop(store: Store, settings: Settings, stop: threading.Event, beat: Heartbeat, holder, max_pixels: int | None = None) -> None:
    """One lane of interpret jobs: those up to `max_pixels` (the small lane), or any (None). The lanes share
    one ModelHolder (api/versions.py): one model loaded (and exported to ONNX) once, used by both."""
    while not stop.is_set():
        job = claim(store, settings, stop, beat, "interpret", max_pixels)
        if job is not None:
            try:
                interpret_one(store, settings, beat, holder, job)
            except DatabaseError as exc:  # failing the job could not be recorded either: its lease runs out
                print(f"worker: job {job['id']}: {exc}", flush=True)
            finally:
                beat.release(job["id"])


def interpret_one(store: Store, settings: Settings, beat: Heartbeat, holder, job: dict) -> None:
    """Run one claimed interpretation to `done` (with its flags in the register) or `failed`; every change
    is guarded by this worker's lease, and a lost lease stops it without touching the job."""
    from landsentry.api.cancel import CancelWatch, JobCancelled, LeaseLost
    from landsentry.api.flag_register import flag_records
    from landsentry.api.inference import run_interpretation
    from landsentry.models.vocabulary.errors import LandsentryError

    job_id, owner, last = job["id"], beat.owner, [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] >= PROGRESS_EVERY_S or done == total:
            last[0] = time.monotonic()
            store.update_job(job_id, owner, progress=round(0.95 * done / max(total, 1), 4), message=f"{done}/{total} windows")

    watch = CancelWatch(store, job_id, progress, beat)
    try:
        loaded = holder.ensure()
        store.update_job(job_id, owner, message="interpreting")
        job_dir = store.job_dir(job_id)
        result = run_interpretation(job_dir, loaded.predictor, holder.change_runner(), job["params"],
                                    settings.preview_max_pixels, watch.progress, watch)
        result["model"] = loaded.model["id"]
        if not store.finish_job(job_id, result, holder=owner, flags=flag_records(job_dir, result)):
            raise JobCancelled(job_id) if store.is_cancelled(job_id) else LeaseLost(job_id)
    except LeaseLost:
        print(f"worker: lost the lease of job {job_id} (another worker took it over); stopped it, left its files", flush=True)
    except JobCancelled:
        store.discard_files(job_id)
    except DatabaseError as exc:  # nothing can be recorded now: the lease runs out and the job runs again
        print(f"worker: job {job_id} stopped: {exc}; it runs again once its lease has run out", flush=True)
    except LandsentryError as exc:
        store.fail_job(job_id, str(exc), owner)
    except Exception as exc:  # a bug, not bad input: keep the worker alive, say what happened
        traceback.print_exc()
        store.fail_job(job_id, f"internal error: {type(exc).__name__}: {str(exc)[:300]}", owner)


def train_loop(store: Store, settings: Settings, stop: threading.Event, beat: Heartbeat) -> None:
    from landsentry.api.train_job import run_train_job

    while not stop.is_set():
        job = claim(store, settings, stop, beat, "train")
        if job is None:
            continue
        try:
            run_train_job(store, settings, job, stop, beat)
        except DatabaseError as exc:  # resumed from its last finished epoch once its lease has run out
            print(f"worker: train job {job['id']} stopped: {exc}", flush=True)
        except Exception as exc:
            traceback.print_exc()
            store.fail_job(job["id"], f"internal error: {type(exc).__name__}: {str(exc)[:300]}", beat.owner)
        finally:
            beat.release(job["id"])


def sweep_expired(store: Store) -> None:
    """Queue again the jobs of workers that stopped renewing their leases (another replica's, or a dead one)."""
    try:
        for job in sweep(store):
            print(f"worker: job {job['id']} ({job['type']}): {job['error'] or job['message']}", flush=True)
    except DatabaseError as exc:
        print(f"worker: {exc}", flush=True)


def run(settings: Settings) -> int:
    import torch

    torch.set_num_threads(settings.threads)
    parent = os.getppid()
    if not settings.database_url:
        lock = (settings.data_dir / "worker.lock").open("w")
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits for an older worker (of a killed server) to be gone
    store = Store(settings.data_dir, settings.database_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    beat = Heartbeat(store, process_owner("worker"), settings.lease_s).start()
    from landsentry.api.versions import ModelHolder

    holder = ModelHolder(store, settings.device, settings.version_check_s)
    lanes = [(interpret_loop, (holder, settings.small_job_max_pixels)), (interpret_loop, (holder, None)), (train_loop, ())]
    threads = [threading.Thread(target=loop, args=(store, settings, stop, beat, *extra), daemon=True, name=f"{loop.__name__}-{i}")
               for i, (loop, extra) in enumerate(lanes)]
    for t in threads:
        t.start()
    print(f"worker {beat.owner} ready on {settings.data_dir} ({store.db.name})", flush=True)
    last_sweep = 0.0
    while not stop.is_set():
        if os.getppid() != parent:  # the server is gone (where no parent-death signal exists)
            stop.set()
        if time.monotonic() - last_sweep >= settings.lease_s / 3:
            last_sweep = time.monotonic()
            sweep_expired(store)
        stop.wait(min(1.0, settings.lease_s / 3))
    for t in threads:
        t.join(15)
    beat.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m landsentry.api.worker", description=__doc__)
    p.add_argument("--settings", type=Path, required=True, help="JSON written by the server (Settings.worker_json: no token)")
    args = p.parse_args(argv)
    return run(Settings.from_worker_json(args.settings.read_text()))


if __name__ == "__main__":
    sys.exit(main())
