"""The ledger in OUTDIR: what was done with which inputs, model and settings, so a rerun redoes only what changed.

`ledger.jsonl` holds one JSON record per finished scene attempt, appended (and fsynced) by the
driver alone as results arrive; the last record of an id wins, and a line torn by a crash is
ignored. A scene is skipped when its last record has the same fingerprint (its input files' paths,
sizes and modification times, its gsd, the models' sha256, the interpretation settings) and either
is done with its folder still in place, or failed for a reason the scene itself causes (a corrupt
file stays corrupt until the file changes, which changes the fingerprint). A lock file keeps a
second batch out of the same OUTDIR.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

from landsentry.models.batch.manifest import Scene
from landsentry.models.batch.worker import SCENES
from landsentry.models.vocabulary.errors import InputError

LEDGER = "ledger.jsonl"
LOCK = ".batch.lock"


def file_stamp(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def fingerprint(scene: Scene, models: dict, settings: dict) -> str:
    """sha256 of everything that decides a scene's outputs."""
    payload = {"inputs": {role: file_stamp(path) for role, path in scene.inputs.items()}, "gsd": scene.gsd,
               "models": models, "settings": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Ledger:
    """The records of OUTDIR's ledger, by scene id, and the append-only file behind them."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.path = outdir / LEDGER
        self.records: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # the last line of a crashed run
                    continue
                if isinstance(record, dict) and "id" in record:
                    self.records[record["id"]] = record

    def append(self, record: dict) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.records[record["id"]] = record

    def skips(self, scene: Scene, scene_fingerprint: str, retry_failed: bool = False) -> bool:
        """Whether `scene` with that fingerprint is already settled: done (outputs in place) or failed by its own fault."""
        record = self.records.get(scene.id)
        if record is None or record.get("fingerprint") != scene_fingerprint:
            return False
        if record.get("status") == "done":
            return (self.outdir / SCENES / scene.id).is_dir()
        return record.get("status") == "failed" and bool(record.get("permanent")) and not retry_failed


class OutdirLock:
    """An exclusive lock on OUTDIR for the driver's lifetime (released by the OS if the driver dies)."""

    def __init__(self, outdir: Path) -> None:
        self.path = outdir / LOCK
        self.fh = None

    def __enter__(self) -> "OutdirLock":
        self.fh = self.path.open("a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise InputError(f"another landsentry batch is writing to {self.path.parent}; wait for it or choose another -o") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
