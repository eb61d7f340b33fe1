"""The store's schema as a numbered list of migrations, applied in order on start (both backends).

A database records the version it is at (table `schema_version`); on start the store applies the
migrations above it, each in one transaction, so a failed one leaves the database as it was. A
database at a newer version than this list (written by a newer landsentry) is refused, untouched.
Never edit a migration once released: add the next one. SQL uses the backends' dialect words
({real}, {serial}, {bool}; api/db.py), so one list serves SQLite and PostgreSQL.

Version 1 is the schema from before versioning (`CREATE ... IF NOT EXISTS`: an older SQLite file
that has these tables simply gets its version recorded).
"""
from __future__ import annotations

from landsentry.api.db import DatabaseError

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("jobs, samples, model versions and settings", [
        "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, type TEXT NOT NULL, kind TEXT, status TEXT NOT NULL, "
        "progress {real} NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '', error TEXT, params TEXT NOT NULL DEFAULT '{{}}', "
        "result TEXT, attempts INTEGER NOT NULL DEFAULT 0, owner TEXT, created TEXT NOT NULL, updated TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, type, created)",
        "CREATE TABLE IF NOT EXISTS samples (id TEXT PRIMARY KEY, width INTEGER NOT NULL, height INTEGER NOT NULL, "
        "class_pixels TEXT NOT NULL, source TEXT NOT NULL, image_file TEXT NOT NULL, created TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS models (id TEXT PRIMARY KEY, name TEXT NOT NULL, parent TEXT, file TEXT NOT NULL, "
        "data TEXT NOT NULL, metrics TEXT NOT NULL, job TEXT, created TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ]),
    ("job leases, pixel counts as a column, one train job at a time by an index", [
        "ALTER TABLE jobs ADD COLUMN lease_until {real}",
        "ALTER TABLE jobs ADD COLUMN pixels BIGINT",
        "UPDATE jobs SET pixels = {json_pixels} WHERE status = 'queued'",
        # one queued-or-running train job, enforced by the database: two replicas cannot both queue one
        "CREATE UNIQUE INDEX jobs_one_train ON jobs (type) WHERE type = 'train' AND status IN ('queued', 'running')",
        "CREATE INDEX jobs_lease ON jobs (status, lease_until)",
    ]),
    ("the flag register", [
        "CREATE TABLE flags (id {serial}, job TEXT NOT NULL, kind TEXT NOT NULL, area_m2 {real}, confidence {real}, "
        "suspected {bool} NOT NULL, reason TEXT NOT NULL DEFAULT '', before_class TEXT, geometry TEXT, "
        "minx {real}, miny {real}, maxx {real}, maxy {real}, after_date TEXT, before_date TEXT, created TEXT NOT NULL)",
        "CREATE INDEX flags_bbox ON flags (minx, maxx, miny, maxy)",
        "CREATE INDEX flags_kind ON flags (kind, created)",
        "CREATE INDEX flags_created ON flags (created)",
        "CREATE INDEX flags_job ON flags (job)",
    ]),
]
LATEST = len(MIGRATIONS)
VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


def current_version(db, backend) -> int:
    db.execute(VERSION_TABLE)
    rows = backend.rows(db.execute("SELECT version FROM schema_version"))
    return max((r["version"] for r in rows), default=0)


def migrate(backend, migrations: list[tuple[str, list[str]]] | None = None) -> tuple[int, int]:
    """Bring the database to the latest version; returns (version before, version after).
    Raises DatabaseError, changing nothing, when the database is newer than `migrations`."""
    migrations = MIGRATIONS if migrations is None else migrations
    latest = len(migrations)
    with backend.transaction() as db:
        backend.lock_migrations(db)
        before = current_version(db, backend)
        if before > latest:
            raise DatabaseError(f"the database {backend.where} is at schema version {before}, newer than this landsentry "
                                f"knows (up to {latest}): it was upgraded by a newer landsentry; run that version "
                                f"(or upgrade this one) - nothing was changed")
        for version in range(before + 1, latest + 1):
            for statement in migrations[version - 1][1]:
                db.execute(backend.sql(statement))
        if latest > before:
            db.execute("DELETE FROM schema_version")
            db.execute(backend.sql("INSERT INTO schema_version (version) VALUES (?)"), (latest,))
    return before, latest
