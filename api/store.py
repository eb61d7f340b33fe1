"""The store: job, sample, model and flag records in a database, files under the data directory.

The database is SQLite (WAL, a file in the data directory: the embedded default, one server) or
PostgreSQL (LANDSENTRY_DATABASE_URL: replicas - several servers and workers on one database and one
shared data directory); api/db.py hides the difference, api/migrations.py creates and upgrades the
schema. State changes that must not race - claiming a queued job, refusing a second train job,
cancelling, finishing - are single guarded statements: a worker claims a job with a lease it renews
(api/heartbeat.py); a job whose lease ran out is queued again for another worker, and only the
holder of a job's lease can change it, so a job completes once. `cancelled` is final: no later
update (progress, done, failed) changes a cancelled job.
"""
from __future__ import annotations

import json
import secrets
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from landsentry.models.vocabulary.atomic import atomic_file

from landsentry.api.db import open_database
from landsentry.api.migrations import migrate

ACTIVE_STATES = ("queued", "running")
MAX_ATTEMPTS = 3  # an interpret job interrupted this often is failed instead of retried
LEFTOVERS = (("jobs", "*/.out-*"), ("samples", ".incoming-*"))
"""Temporary folders a killed process leaves behind (under the data directory), removed at start."""
SHARED_LEFTOVER_AGE_S = 3600
"""With replicas, another replica may be writing a temporary folder right now: only old ones are leftovers."""
FLAG_COLUMNS = ("job", "kind", "area_m2", "confidence", "suspected", "reason", "before_class", "geometry",
                "minx", "miny", "maxx", "maxy", "after_date", "before_date", "created")


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
    """Records of jobs, samples, model versions and flags, and where their files live under `data_dir`."""

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        for sub in ("jobs", "samples/images", "samples/masks", "models"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self.db = open_database(self.data_dir, database_url)
        self.schema = migrate(self.db)

    @property
    def shared(self) -> bool:
        """Whether other replicas (servers and workers) may use this database and data directory too."""
        return self.db.shared

    def close(self) -> None:
        self.db.close()

    # --- layout ----------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    @property
    def samples_dir(self) -> Path:
        return self.data_dir / "samples"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    # --- statements ------------------------------------------------------------------------------
    def _one(self, sql: str, args: tuple = ()) -> dict | None:
        with self.db.connect() as db:
            rows = self.db.rows(db.execute(self.db.sql(sql), args))
        return rows[0] if rows else None

    def _all(self, sql: str, args: tuple = ()) -> list[dict]:
        with self.db.connect() as db:
            return self.db.rows(db.execute(self.db.sql(sql), args))

    def _run(self, sql: str, args: tuple = ()) -> int:
        with self.db.connect() as db:
            return db.execute(self.db.sql(sql), args).rowcount

    # --- jobs ------------------------------------------------------------------------------------
    @staticmethod
    def _job(row: dict | None) -> dict | None:
        if row is None:
            return None
        job = dict(row)
        job["params"] = _loads(job["params"]) or {}
        job["result"] = _loads(job["result"])
        return job

    def create_job(self, job_id: str, type_: str, params: dict, status: str = "queued", kind: str | None = None,
                   message: str = "", owner: str | None = None, lease_s: float | None = None) -> dict:
        """A new job; one created `running` for `owner` holds a lease of `lease_s` seconds (renewed by its heartbeat)."""
        t = now()
        self._run("INSERT INTO jobs (id, type, kind, status, message, params, owner, pixels, lease_until, created, updated) "
                  "VALUES (?,?,?,?,?,?,?,?,{epoch} + ?,?,?)",
                  (job_id, type_, kind, status, message, json.dumps(params), owner, params.get("pixels"),
                   lease_s if status == "running" and lease_s is not None else None, t, t))
        return self.get_job(job_id)  # type: ignore[return-value]

    def create_train_job(self, job_id: str, params: dict) -> dict | None:
        """Queue a train job unless one is queued or running (a unique index: two replicas cannot both win)."""
        t = now()
        n = self._run(
            "INSERT INTO jobs (id, type, status, message, params, created, updated) "
            "SELECT ?, 'train', 'queued', 'waiting for the worker', ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE type = 'train' AND status IN ('queued', 'running')) ON CONFLICT DO NOTHING",
            (job_id, json.dumps(params), t, t))
        return self.get_job(job_id) if n else None

    def get_job(self, job_id: str) -> dict | None:
        return self._job(self._one("SELECT * FROM jobs WHERE id = ?", (job_id,)))

    def list_jobs(self, limit: int = 200) -> list[dict]:
        return [self._job(r) for r in self._all("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))]  # type: ignore[misc]

    def claim_job(self, type_: str, owner: str, max_pixels: int | None = None, lease_s: float = 30.0) -> dict | None:
        """The oldest queued job of a type, now running for `owner` with a lease of `lease_s` seconds; None when
        there is none. `max_pixels`: only jobs of at most this many pixels (the small-job lane). With
        PostgreSQL, workers claiming at once skip each other's locked rows (SKIP LOCKED), never wait or collide."""
        small = "" if max_pixels is None else " AND pixels <= ?"
        row = self._one(
            "UPDATE jobs SET status = 'running', owner = ?, attempts = attempts + 1, updated = ?, lease_until = {epoch} + ? "
            f"WHERE status = 'queued' AND id = (SELECT id FROM jobs WHERE status = 'queued' AND type = ?{small} "
            "ORDER BY created LIMIT 1 {skip_locked}) RETURNING *",
            (owner, now(), lease_s, type_, *(() if max_pixels is None else (max_pixels,))))
        return self._job(row)

    def renew_leases(self, owner: str, job_ids: list[str], lease_s: float) -> set[str]:
        """Extend the leases `owner` still holds among `job_ids`; returns those it holds (the others were lost:
        cancelled, or taken over after the lease ran out)."""
        if not job_ids:
            return set()
        marks = ",".join("?" * len(job_ids))
        rows = self._all(f"UPDATE jobs SET lease_until = {{epoch}} + ? WHERE owner = ? AND status = 'running' AND id IN ({marks}) "
                         "RETURNING id", (lease_s, owner, *job_ids))
        return {r["id"] for r in rows}

    def holds(self, job_id: str, owner: str) -> bool:
        """Whether `owner` still runs the job (not cancelled, not taken over)."""
        return self._one("SELECT 1 AS x FROM jobs WHERE id = ? AND owner = ? AND status = 'running'", (job_id, owner)) is not None

    def update_job(self, job_id: str, holder: str | None = None, **fields: Any) -> bool:
        """Change a job's fields unless it was cancelled (with `holder`: only while that owner runs it);
        returns whether it did."""
        if "params" in fields:
            fields["params"] = json.dumps(fields["params"])
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"], default=str) if fields["result"] is not None else None
        fields["updated"] = now()
        columns = ", ".join(f"{k} = ?" for k in fields)
        guard = " AND owner = ? AND status = 'running'" if holder is not None else ""
        args = (*fields.values(), job_id, *(() if holder is None else (holder,)))
        return self._run(f"UPDATE jobs SET {columns} WHERE id = ? AND status != 'cancelled'{guard}", args) > 0

    def finish_job(self, job_id: str, result: dict, message: str = "done", holder: str | None = None,
                   flags: list[dict] | None = None) -> bool:
        """Mark a job done and register its flags, in one transaction. False (nothing changed) when it was
        cancelled meanwhile - its files are then the caller's to remove - or, with `holder`, when that owner no
        longer holds it (its lease was lost and another worker runs it: its files are not the caller's)."""
        guard = " AND owner = ? AND status = 'running'" if holder is not None else ""
        with self.db.transaction() as db:
            done = db.execute(self.db.sql("UPDATE jobs SET status = 'done', progress = 1.0, message = ?, result = ?, error = NULL, "
                                          f"lease_until = NULL, updated = ? WHERE id = ? AND status != 'cancelled'{guard}"),
                              (message, json.dumps(result, default=str), now(), job_id, *(() if holder is None else (holder,)))).rowcount
            if done and flags:
                db.execute(self.db.sql("DELETE FROM flags WHERE job = ?"), (job_id,))
                insert = self.db.sql(f"INSERT INTO flags ({', '.join(FLAG_COLUMNS)}) VALUES ({','.join('?' * len(FLAG_COLUMNS))})")
                t = now()
                for flag in flags:
                    db.execute(insert, tuple(t if c == "created" else job_id if c == "job" else flag.get(c) for c in FLAG_COLUMNS))
        return done > 0

    def fail_job(self, job_id: str, error: str, holder: str | None = None) -> bool:
        return self.update_job(job_id, holder, status="failed", message="failed", error=error, lease_until=None)

    def cancel_job(self, job_id: str) -> dict | None:
        """Cancel a queued or running job (one statement: a worker cannot claim it in between); returns it as
        it is now, or None when it was not queued or running. A queued job's files go at once; a running
        job's owner notices within seconds (`is_cancelled`), stops and removes them."""
        row = self._one("UPDATE jobs SET status = 'cancelled', message = 'cancelled', lease_until = NULL, updated = ? "
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
        files of jobs cancelled while their owner was dying. With replicas, the temporary folders of running
        jobs and recent uploads may be another replica's work in progress and stay. Returns what was removed."""
        running = {r["id"] for r in self._all("SELECT id FROM jobs WHERE status = 'running'")}
        young = time.time() - SHARED_LEFTOVER_AGE_S

        def leftover(path: Path) -> bool:
            if path.parent.name in running:
                return False
            return not self.shared or path.stat().st_mtime < young

        gone = [p for base, pattern in LEFTOVERS for p in (self.data_dir / base).glob(pattern) if p.is_dir() and leftover(p)]
        gone += [self.job_dir(r["id"]) for r in self._all("SELECT id FROM jobs WHERE status = 'cancelled'") if self.job_dir(r["id"]).exists()]
        for path in gone:
            shutil.rmtree(path, ignore_errors=True)
        return gone

    def delete_job(self, job_id: str) -> None:
        self._run("DELETE FROM jobs WHERE id = ?", (job_id,))
        self.discard_files(job_id)

    def recover(self, owner: str | None = None, expired: bool = False) -> list[dict]:
        """Jobs left `running` by a process that is gone: all of them (after a restart of the one SQLite
        server), those of `owner` (a worker that died), or with `expired`, those whose lease ran out (a
        replica stopped answering). Interpret jobs are queued again (their inputs are on disk) up to
        MAX_ATTEMPTS, train jobs are queued to resume from their last finished epoch. Each change is guarded,
        so replicas recovering at once touch a job once. Returns the jobs touched, as they are now."""
        touched = []
        where = "status = 'running'" + (" AND owner = ?" if owner else "") + (" AND lease_until < {epoch}" if expired else "")
        cause = "its worker stopped renewing its lease" if expired else "interrupted by a server restart"
        for job in (self._job(r) for r in self._all(f"SELECT * FROM jobs WHERE {where}", (owner,) if owner else ())):
            assert job is not None
            guard = (job["id"], job["owner"] or "", job["attempts"])
            if job["type"] == "interpret" and job["attempts"] >= MAX_ATTEMPTS:
                change = {"status": "failed", "message": "failed", "error": f"{cause}, {job['attempts']} times; giving up"}
            elif not self.job_dir(job["id"]).is_dir():
                change = {"status": "failed", "message": "failed", "error": f"{cause}, and its input files are gone"}
            else:
                what = "will resume from its last finished epoch" if job["type"] == "train" else "queued again"
                change = {"status": "queued", "owner": None, "message": f"{cause}; {what}"}
            columns = ", ".join(f"{k} = ?" for k in change)
            if self._run(f"UPDATE jobs SET {columns}, lease_until = NULL, updated = ? WHERE id = ? AND status = 'running' "
                         "AND COALESCE(owner, '') = ? AND attempts = ?", (*change.values(), now(), *guard)):
                touched.append(self.get_job(job["id"]))
        return touched

    def count_jobs(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self._all("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}

    # --- samples ---------------------------------------------------------------------------------
    @staticmethod
    def _sample(row: dict | None) -> dict | None:
        if row is None:
            return None
        sample = dict(row)
        sample["class_pixels"] = _loads(sample["class_pixels"])
        return sample

    def add_sample(self, sample_id: str, width: int, height: int, class_pixels: dict, source: str, image_file: str) -> dict:
        self._run("INSERT INTO samples (id, width, height, class_pixels, source, image_file, created) VALUES (?,?,?,?,?,?,?)",
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
    def _model(row: dict | None) -> dict | None:
        if row is None:
            return None
        model = dict(row)
        model["data"] = _loads(model["data"]) or {}
        model["metrics"] = _loads(model["metrics"]) or {}
        return model

    def add_model(self, model_id: str, name: str, parent: str | None, file: str, data: dict, metrics: dict, job: str | None = None) -> dict:
        """Register a version (idempotent: a resumed job that registered before a crash does not add it twice)."""
        self._run("INSERT INTO models (id, name, parent, file, data, metrics, job, created) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
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

    def set_active_model(self, model_id: str, only_if_unset: bool = False) -> None:
        """Make a version active (every replica serves it within LANDSENTRY_VERSION_CHECK_S); `only_if_unset`: the
        first start's choice, which never overrides one already made (by another replica starting at once)."""
        change = "NOTHING" if only_if_unset else "UPDATE SET value = excluded.value"
        self._run(f"INSERT INTO meta (key, value) VALUES ('active_model', ?) ON CONFLICT(key) DO {change}", (model_id,))

    # --- flags (api/flag_register.py) -------------------------------------------------------------
    def flag_rows(self, where: str, args: tuple, limit: int) -> list[dict]:
        """Register rows matching `where` (SQL built by the register, never from user text), by id."""
        return self._all(f"SELECT * FROM flags WHERE {where} ORDER BY id LIMIT ?", (*args, limit))
