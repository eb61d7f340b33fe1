"""The worker process: runs queued jobs outside the request path.

Started by the server (`python -m landsentry.api.worker --settings DATA/worker-settings.json`, in the
data directory) and killed with it. Interpret jobs (large inputs) run in two lanes, each one job at
a time with the active model: the small lane takes only jobs up to LANDSENTRY_SMALL_JOB_MAX_PIXELS,
the other any job, oldest first - so one user's huge scene never makes everyone's small jobs wait.
Another thread runs train jobs, each as a `landsentry train` child process with one CPU thread, so
inference stays responsive while training. A cancelled job stops within seconds (api/cancel.py).
An exclusive lock on `DATA/worker.lock` keeps a second worker from ever claiming jobs beside it.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from landsentry.api.settings import Settings
from landsentry.api.store import Store

POLL_S = 0.3
PROGRESS_EVERY_S = 0.5


def spawn(settings: Settings) -> subprocess.Popen:
    """Start the worker for the server, in the data directory; it dies with the server (see api.proc)."""
    from landsentry.api.proc import python_module, start_child

    settings_file = settings.data_dir / "worker-settings.json"
    settings_file.write_text(settings.worker_json())
    with (settings.data_dir / "worker.log").open("ab") as log:
        return start_child(python_module("landsentry.api.worker", "--settings", str(settings_file)), log,
                           settings.threads, cwd=settings.data_dir)


def interpret_loop(store: Store, settings: Settings, stop: threading.Event, owner: str, holder, max_pixels: int | None = None) -> None:
    """One lane of interpret jobs: those up to `max_pixels` (the small lane), or any (None). The lanes share
    one ModelHolder (api/versions.py): one model loaded (and exported to ONNX) once, used by both."""
    from landsentry.api.cancel import CancelWatch, JobCancelled
    from landsentry.api.inference import run_interpretation
    from landsentry.models.vocabulary.errors import LandsentryError

    while not stop.is_set():
        job = store.claim_job("interpret", owner, max_pixels)
        if job is None:
            stop.wait(POLL_S)
            continue
        last = [0.0]

        def progress(done: int, total: int, job_id: str = job["id"]) -> None:
            if time.monotonic() - last[0] >= PROGRESS_EVERY_S or done == total:
                last[0] = time.monotonic()
                store.update_job(job_id, progress=round(0.95 * done / max(total, 1), 4), message=f"{done}/{total} windows")

        watch = CancelWatch(store, job["id"], progress)
        try:
            loaded = holder.ensure()
            store.update_job(job["id"], message="interpreting")
            result = run_interpretation(store.job_dir(job["id"]), loaded.predictor, holder.change_runner(),
                                        job["params"], settings.preview_max_pixels, watch.progress, watch)
            result["model"] = loaded.model["id"]
            if not store.finish_job(job["id"], result):
                raise JobCancelled(job["id"])
        except JobCancelled:
            store.discard_files(job["id"])
        except LandsentryError as exc:
            store.fail_job(job["id"], str(exc))
        except Exception as exc:  # a bug, not bad input: keep the worker alive, say what happened
            traceback.print_exc()
            store.fail_job(job["id"], f"internal error: {type(exc).__name__}: {str(exc)[:300]}")


def train_loop(store: Store, settings: Settings, stop: threading.Event, owner: str) -> None:
    from landsentry.api.train_job import run_train_job

    while not stop.is_set():
        job = store.claim_job("train", owner)
        if job is None:
            stop.wait(POLL_S)
            continue
        try:
            run_train_job(store, settings, job, stop)
        except Exception as exc:
            traceback.print_exc()
            store.fail_job(job["id"], f"internal error: {type(exc).__name__}: {str(exc)[:300]}")


def run(settings: Settings) -> int:
    import torch

    torch.set_num_threads(settings.threads)
    parent = os.getppid()
    lock = (settings.data_dir / "worker.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # waits for an older worker (of a killed server) to be gone
    store = Store(settings.data_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    owner = f"worker:{os.getpid()}"
    from landsentry.api.versions import ModelHolder

    holder = ModelHolder(store, settings.device)
    lanes = [(interpret_loop, (holder, settings.small_job_max_pixels)), (interpret_loop, (holder, None)), (train_loop, ())]
    threads = [threading.Thread(target=loop, args=(store, settings, stop, owner, *extra), daemon=True, name=f"{loop.__name__}-{i}")
               for i, (loop, extra) in enumerate(lanes)]
    for t in threads:
        t.start()
    print(f"worker {os.getpid()} ready on {settings.data_dir}", flush=True)
    while not stop.is_set():
        if os.getppid() != parent:  # the server is gone (where no parent-death signal exists)
            stop.set()
        stop.wait(1.0)
    for t in threads:
        t.join(15)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m landsentry.api.worker", description=__doc__)
    p.add_argument("--settings", type=Path, required=True, help="JSON written by the server (Settings.worker_json: no token)")
    args = p.parse_args(argv)
    return run(Settings.from_worker_json(args.settings.read_text()))


if __name__ == "__main__":
    sys.exit(main())
