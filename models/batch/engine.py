"""The driver: scenes to Dask distributed workers and records back into the ledger, resumable and idempotent.

By default a `LocalCluster` on this machine: N worker processes, each running one scene at a time
with cores / N model threads, so torch and ONNX Runtime never oversubscribe the cores. With
`scheduler` the same tasks go to an existing cluster (a SLURM allocation through dask-jobqueue, a
Kubernetes DaskCluster, `dask scheduler` + `dask worker` by hand): nothing else changes, since a
task is plain data and its worker reads the inputs and writes OUTDIR on a shared file system.

Dask gives the rest: `retries` reruns a scene whose attempt raised (a transient error), and a
worker that dies mid-scene has its scene rerun on another one (a scene that kills every worker it
meets, out of memory, fails alone as KilledWorker after `distributed.scheduler.allowed-failures`).
Each finished scene is appended to the ledger as it arrives, so an interrupted batch resumes.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import time
import uuid
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from landsentry.models.batch.cores import usable_cores
from landsentry.models.batch.ledger import Ledger, OutdirLock
from landsentry.models.batch.worker import SCENES, SceneTask, run_scene
from landsentry.models.vocabulary.errors import InputError

ResultFn = Callable[[dict, int, int], None]  # (record, finished so far, scenes to run)
T = TypeVar("T")


def available_cores() -> int:
    return usable_cores()


@dataclass(frozen=True)
class EngineOptions:
    """Where the scenes run: a local cluster of `workers` processes, or the cluster at `scheduler`."""

    workers: int = 1
    scheduler: str | None = None
    dashboard: str | None = ":8787"
    retries: int = 2
    connect_timeout: float = 10.0


@dataclass
class Cluster:
    client: object
    scheduler: str
    dashboard: str | None
    local: bool


@contextlib.contextmanager
def open_cluster(options: EngineOptions) -> Iterator[Cluster]:
    """A client on the cluster: joined at `options.scheduler`, or a LocalCluster started here (and stopped after)."""
    from distributed import Client, LocalCluster

    if options.scheduler is not None:
        try:
            client = Client(options.scheduler, timeout=f"{options.connect_timeout}s", set_as_default=False)
        except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address
            raise InputError(f"--scheduler {options.scheduler} does not answer ({type(exc).__name__}: {exc}); nothing was started") from None
        with client:
            yield Cluster(client, options.scheduler, _dashboard(client), local=False)
        return
    cluster = LocalCluster(n_workers=options.workers, threads_per_worker=1, processes=True, dashboard_address=options.dashboard,
                           silence_logs=logging.ERROR)
    with cluster, Client(cluster, set_as_default=False) as client:
        yield Cluster(client, cluster.scheduler_address, _dashboard(client) if options.dashboard else None, local=True)


def _dashboard(client) -> str | None:
    try:
        info = client.scheduler_info()
        return client.dashboard_link if "dashboard" in info.get("services", {}) else None  # the http server: bokeh pages when installed
    except Exception:  # an old scheduler without the field: no link rather than a wrong one
        return None


def failed_record(task: SceneTask, exc: BaseException) -> dict:
    """The record of a scene whose every attempt raised (or whose workers died): a failure that a rerun tries again."""
    name = type(exc).__name__
    if name == "KilledWorker":
        reason = f"the worker running it died every time it was tried (out of memory?): {exc}"
    else:
        reason = f"{name}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'no message'}"
    return {"id": task.scene.id, "fingerprint": task.fingerprint, "status": "failed", "reason": reason, "permanent": False,
            "after_date": task.scene.after_date, "before_date": task.scene.before_date}


def clean_stale_work(outdir: Path) -> None:
    """Work folders left by workers of a killed run (the lock says no other driver is writing)."""
    scenes = outdir / SCENES
    if scenes.is_dir():
        for path in scenes.iterdir():
            if path.name.startswith((".work-", ".old-")):
                shutil.rmtree(path, ignore_errors=True)


def run_tasks(cluster: Cluster, tasks: list[SceneTask], retries: int, ledger: Ledger, on_result: ResultFn | None = None) -> list[dict]:
    """Submit every task, record each result in the ledger as it arrives; returns the records in arrival order."""
    from distributed import as_completed

    futures = {cluster.client.submit(run_scene, task, key=f"scene-{task.scene.id}-{uuid.uuid4().hex[:8]}", retries=retries,
                                     pure=False): task for task in tasks}
    records = []
    for future in as_completed(futures, loop=cluster.client.loop):
        task = futures.pop(future)
        try:
            record = future.result()
        except (Exception, CancelledError) as exc:
            record = failed_record(task, exc)
        record["finished_at"] = round(time.time(), 3)
        ledger.append(record)
        records.append(record)
        future.release()
        if on_result is not None:
            on_result(record, len(records), len(tasks))
    return records


@dataclass
class Settled:
    """What one batch did: the records of the scenes it ran, the ids it skipped, the ledger, the cluster and the times."""

    ran: list[dict]
    skipped: list[str]
    ledger: Ledger
    cluster: dict
    processing_s: float
    elapsed_s: float


def _todo(tasks: list[SceneTask], ledger: Ledger, retry_failed: bool) -> list[SceneTask]:
    return [t for t in tasks if not ledger.skips(t.scene, t.fingerprint, retry_failed)]


def run_batch(tasks: list[SceneTask], outdir: Path, options: EngineOptions, finish: Callable[[Settled], T],
              retry_failed: bool = False, on_start: Callable[[Cluster | None, int, int], None] | None = None,
              on_result: ResultFn | None = None) -> T:
    """Run the tasks not already settled in OUTDIR's ledger, then `finish` (the register and reports), holding
    OUTDIR's lock throughout. The cluster is reached (or started) before anything is written, so a scheduler
    that does not answer leaves OUTDIR untouched; when every scene is settled, no cluster is started at all."""
    started = time.time()
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(open_cluster(options)) if _todo(tasks, Ledger(outdir), retry_failed) else None
        outdir.mkdir(parents=True, exist_ok=True)
        stack.enter_context(OutdirLock(outdir))
        clean_stale_work(outdir)
        ledger = Ledger(outdir)  # again, under the lock
        todo = _todo(tasks, ledger, retry_failed) if cluster is not None else []
        ids = {t.scene.id for t in todo}
        skipped = [t.scene.id for t in tasks if t.scene.id not in ids]
        if on_start is not None:
            on_start(cluster, len(todo), len(skipped))
        begin = time.time()
        ran = run_tasks(cluster, todo, options.retries, ledger, on_result) if todo else []
        processing = time.time() - begin
        clean_stale_work(outdir)  # every task of this run is finished: what is left belongs to attempts on lost workers
        about = {"scheduler": None, "dashboard": None, "local": None, "workers": []}
        if cluster is not None:
            about = {"scheduler": cluster.scheduler, "dashboard": cluster.dashboard, "local": cluster.local,
                     "workers": sorted(cluster.client.scheduler_info().get("workers", {}))}
        return finish(Settled(ran, skipped, ledger, about, processing, time.time() - started))
