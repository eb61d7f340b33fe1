"""The embedded store: job, sample and model records in SQLite (WAL), files under the data directory.

The server and the worker process share one database file; each call opens its own short
connection (cheap for SQLite, and safe across threads and processes). State changes that must not
race - claiming a queued job, refusing a second train job, cancelling - are single SQL statements.
`cancelled` is final: no later update (progress, done, failed) changes a cancelled job.
"""
from __future__ import annotations

import json
import secrets
import shutil
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from landsentry.models.vocabulary.atomic import atomic_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, kind TEXT, status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '', error TEXT, params TEXT NOT NULL DEFAULT '{}', result TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, owner TEXT, created TEXT NOT NULL, updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, type, created);
CREATE TABLE IF NOT EXISTS samples (
    id TEXT PRIMARY KEY, width INTEGER NOT NULL, height INTEGER NOT NULL, class_pixels TEXT NOT NULL,
    source TEXT NOT NULL, image_file TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, parent TEXT, file TEXT NOT NULL, data TEXT NOT NULL,
    metrics TEXT NOT NULL, job TEXT, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
ACTIVE_STATES = ("queued", "running")
MAX_ATTEMPTS = 3  # an interpret job interrupted this often is failed instead of retried
LEFTOVERS = (("jobs", "*/.out-*"), ("samples", ".incoming-*"))
"""Temporary folders a killed process leaves behind (under the data directory), removed at start."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a part."""
    with atomic_file(path) as fh:
        fh.write(data)


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy a file so that `dst` appears complete or not at all."""
    with atomic_file(dst) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


class Store:
    """Records of jobs, samples and model versions, and where their files live under `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        for sub in ("jobs", "samples/images", "samples/masks", "models"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / "landsentry.db"
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    # --- layout ----------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    @property
    def samples_dir(self) -> Path:
        return self.data_dir / "samples"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    # --- connection ------------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    def _one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        with self._connect() as db:
            return db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._connect() as db:
            return db.execute(sql, args).fetchall()

    def _run(self, sql: str, args: tuple = ()) -> int:
        with self._connect() as db:
            return db.execute(sql, args).rowcount

    # --- jobs ------------------------------------------------------------------------------------
    @staticmethod
    def _job(row: sqlite3.Row | None) -> dict | None:
        if row is None:
            return None
        job = dict(row)
        job["params"] = _loads(job["params"]) or {}
        job["result"] = _loads(job["result"])
        return job

    def create_job(self, job_id: str, type_: str, params: dict, status: str = "queued", kind: str | None = None,
                   message: str = "", owner: str | None = None) -> dict:
        t = now()
        self._run("INSERT INTO jobs (id, type, kind, status, message, params, owner, created, updated) VALUES (?,?,?,?,?,?,?,?,?)",
                  (job_id, type_, kind, status, message, json.dumps(params), owner, t, t))
        return self.get_job(job_id)  # type: ignore[return-value]

    def create_train_job(self, job_id: str, params: dict) -> dict | None:
        """Queue a train job unless one is queued or running (one statement: two requests cannot both win)."""
        t = now()
        n = self._run(
            "INSERT INTO jobs (id, type, status, message, params, created, updated) "
            "SELECT ?, 'train', 'queued', 'waiting for the worker', ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE type = 'train' AND status IN ('queued', 'running'))",
            (job_id, json.dumps(params), t, t))
        return self.get_job(job_id) if n else None

    def get_job(self, job_id: str) -> dict | None:
        return self._job(self._one("SELECT * FROM jobs WHERE id = ?", (job_id,)))

    def list_jobs(self, limit: int = 200) -> list[dict]:
        return [self._job(r) for r in self._all("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))]  # type: ignore[misc]

    def claim_job(self, type_: str, owner: str, max_pixels: int | None = None) -> dict | None:
        """The oldest queued job of a type, now marked running for `owner`; None when there is none.
        `max_pixels`: only jobs whose inputs hold at most this many pixels (params.pixels; the small-job lane)."""
        row = self._one(
            "UPDATE jobs SET status = 'running', owner = ?, attempts = attempts + 1, updated = ? "
            "WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND type = ? "
            "AND (? IS NULL OR json_extract(params, '$.pixels') <= ?) ORDER BY created LIMIT 1) RETURNING *",
            (owner, now(), type_, max_pixels, max_pixels))
        return self._job(row)

    def update_job(self, job_id: str, **fields: Any) -> bool:
        """Change a job's fields unless it was cancelled; returns whether it did."""
        if "params" in fields:
            fields["params"] = json.dumps(fields["params"])
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"], default=str) if fields["result"] is not None else None
        fields["updated"] = now()
        columns = ", ".join(f"{k} = ?" for k in fields)
        return self._run(f"UPDATE jobs SET {columns} WHERE id = ? AND status != 'cancelled'", (*fields.values(), job_id)) > 0

    def finish_job(self, job_id: str, result: dict, message: str = "done") -> bool:
        """Mark a job done (False when it was cancelled meanwhile: its files are then the caller's to remove)."""
        return self.update_job(job_id, status="done", progress=1.0, message=message, result=result, error=None)

    def fail_job(self, job_id: str, error: str) -> None:
        self.update_job(job_id, status="failed", message="failed", error=error)

    def cancel_job(self, job_id: str) -> dict | None:
        """Cancel a queued or running job (one statement: a worker cannot claim it in between); returns it as
        it is now, or None when it was not queued or running. A queued job's files go at once; a running
        job's owner notices within seconds (`is_cancelled`), stops and removes them."""
        row = self._one("UPDATE jobs SET status = 'cancelled', message = 'cancelled', updated = ? "
                        "WHERE id = ? AND status IN ('queued', 'running') RETURNING *", (now(), job_id))
        job = self._job(row)
        if job is not None and job["owner"] is None:  # never started: nobody else holds its files
            self.discard_files(job_id)
        return job

    def is_cancelled(self, job_id: str) -> bool:
        row = self._one("SELECT status FROM jobs WHERE id = ?", (job_id,))
        return row is not None and row["status"] == "cancelled"

    def discard_files(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def clean_leftovers(self) -> list[Path]:
        """At start: remove what killed processes left behind - temporary result and upload folders, and the
        files of jobs cancelled while their owner was dying. Returns what was removed."""
        gone = [p for base, pattern in LEFTOVERS for p in (self.data_dir / base).glob(pattern) if p.is_dir()]
        gone += [self.job_dir(r["id"]) for r in self._all("SELECT id FROM jobs WHERE status = 'cancelled'") if self.job_dir(r["id"]).exists()]
        for path in gone:
            shutil.rmtree(path, ignore_errors=True)
        return gone

    def delete_job(self, job_id: str) -> None:
        self._run("DELETE FROM jobs WHERE id = ?", (job_id,))
        self.discard_files(job_id)

    def recover(self, owner: str | None = None) -> list[dict]:
        """After a restart: every job left `running` belonged to a process that is gone (with `owner`:
        only that dead process's jobs). Interpret jobs are queued again (their inputs are on disk) up to
        MAX_ATTEMPTS, train jobs are queued to resume from their last finished epoch. Returns the jobs
        touched, as they are now."""
        touched = []
        rows = self._all("SELECT * FROM jobs WHERE status = 'running'" + (" AND owner = ?" if owner else ""), (owner,) if owner else ())
        for job in (self._job(r) for r in rows):
            assert job is not None
            if job["type"] == "interpret" and job["attempts"] >= MAX_ATTEMPTS:
                self.fail_job(job["id"], f"interrupted {job['attempts']} times by server restarts; giving up")
            elif not self.job_dir(job["id"]).is_dir():
                self.fail_job(job["id"], "interrupted by a server restart, and its input files are gone")
            else:
                what = "will resume from its last finished epoch" if job["type"] == "train" else "queued again"
                self.update_job(job["id"], status="queued", owner=None, message=f"interrupted by a server restart; {what}")
            touched.append(self.get_job(job["id"]))
        return touched

    def count_jobs(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self._all("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}

    # --- samples ---------------------------------------------------------------------------------
    @staticmethod
    def _sample(row: sqlite3.Row | None) -> dict | None:
        if row is None:
            return None
        sample = dict(row)
        sample["class_pixels"] = _loads(sample["class_pixels"])
        return sample

    def add_sample(self, sample_id: str, width: int, height: int, class_pixels: dict, source: str, image_file: str) -> dict:
        self._run("INSERT INTO samples VALUES (?,?,?,?,?,?,?)",
                  (sample_id, width, height, json.dumps(class_pixels), source, image_file, now()))
        return self.get_sample(sample_id)  # type: ignore[return-value]

    def get_sample(self, sample_id: str) -> dict | None:
        return self._sample(self._one("SELECT * FROM samples WHERE id = ?", (sample_id,)))

    def list_samples(self) -> list[dict]:
        return [self._sample(r) for r in self._all("SELECT * FROM samples ORDER BY created, id")]  # type: ignore[misc]

    def delete_sample(self, sample_id: str) -> bool:
        sample = self.get_sample(sample_id)
        if sample is None:
            return False
        self._run("DELETE FROM samples WHERE id = ?", (sample_id,))
        (self.samples_dir / "images" / sample["image_file"]).unlink(missing_ok=True)
        (self.samples_dir / "masks" / f"{sample_id}.png").unlink(missing_ok=True)
        return True

    # --- models ----------------------------------------------------------------------------------
    @staticmethod
    def _model(row: sqlite3.Row | None) -> dict | None:
        if row is None:
            return None
        model = dict(row)
        model["data"] = _loads(model["data"]) or {}
        model["metrics"] = _loads(model["metrics"]) or {}
        return model

    def add_model(self, model_id: str, name: str, parent: str | None, file: str, data: dict, metrics: dict, job: str | None = None) -> dict:
        """Register a version (idempotent: a resumed job that registered before a crash does not add it twice)."""
        self._run("INSERT OR IGNORE INTO models VALUES (?,?,?,?,?,?,?,?)",
                  (model_id, name, parent, file, json.dumps(data, default=str), json.dumps(metrics, default=str), job, now()))
        return self.get_model(model_id)  # type: ignore[return-value]

    def get_model(self, model_id: str) -> dict | None:
        return self._model(self._one("SELECT * FROM models WHERE id = ?", (model_id,)))

    def list_models(self) -> list[dict]:
        return [self._model(r) for r in self._all("SELECT * FROM models ORDER BY created, id")]  # type: ignore[misc]

    def model_path(self, model: dict) -> Path:
        return self.models_dir / model["file"]

    def active_model_id(self) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = 'active_model'")
        return row["value"] if row else None

    def set_active_model(self, model_id: str) -> None:
        self._run("INSERT INTO meta (key, value) VALUES ('active_model', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (model_id,))
