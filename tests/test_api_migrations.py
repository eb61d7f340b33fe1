"""Schema versions on both backends: a fresh database reaches the latest version, an unversioned SQLite file from
before versioning keeps its rows, a failed migration changes nothing, a newer database and a bad URL are refused
with a clear message (and left untouched)."""
from __future__ import annotations

import sqlite3

import pytest

from landsentry.api.db import DatabaseError, open_database, redact
from landsentry.api.migrations import LATEST, MIGRATIONS, migrate
from landsentry.api.settings import Settings
from landsentry.api.store import Store
from landsentry.models.vocabulary.errors import InputError

OLD_SCHEMA = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, type TEXT NOT NULL, kind TEXT, status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '', error TEXT, params TEXT NOT NULL DEFAULT '{}', result TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, owner TEXT, created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE INDEX jobs_status ON jobs (status, type, created);
CREATE TABLE samples (id TEXT PRIMARY KEY, width INTEGER NOT NULL, height INTEGER NOT NULL, class_pixels TEXT NOT NULL,
    source TEXT NOT NULL, image_file TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE models (id TEXT PRIMARY KEY, name TEXT NOT NULL, parent TEXT, file TEXT NOT NULL, data TEXT NOT NULL,
    metrics TEXT NOT NULL, job TEXT, created TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO jobs (id, type, status, params, created, updated) VALUES ('j_old', 'interpret', 'queued', '{"pixels": 77}', 't', 't');
INSERT INTO meta VALUES ('active_model', 'm_old');
"""
"""The SQLite schema as released before versioning, with a queued job and an active version."""


def version(backend) -> int:
    with backend.connect() as db:
        return backend.rows(db.execute("SELECT version FROM schema_version"))[0]["version"]


def test_migrations_are_numbered_and_reach_the_latest(tmp_path, backend_url):
    assert LATEST == len(MIGRATIONS) >= 3 and all(desc and steps for desc, steps in MIGRATIONS)
    store = Store(tmp_path, backend_url)
    assert store.schema == (0, LATEST) and version(store.db) == LATEST
    assert Store(tmp_path, backend_url).schema == (LATEST, LATEST)  # a second start changes nothing


def test_unversioned_sqlite_file_is_migrated_keeping_its_rows(tmp_path):
    with sqlite3.connect(tmp_path / "landsentry.db") as db:
        db.executescript(OLD_SCHEMA)
    store = Store(tmp_path)
    assert store.schema == (0, LATEST)
    job = store.get_job("j_old")
    assert job["status"] == "queued" and job["params"] == {"pixels": 77} and job["pixels"] == 77  # backfilled for the small lane
    assert store.active_model_id() == "m_old"
    assert store.claim_job("interpret", "w", max_pixels=100)["id"] == "j_old"


def test_a_failed_migration_changes_nothing(tmp_path, backend_url):
    backend = open_database(tmp_path, backend_url)
    broken = [*MIGRATIONS, ("half done", ["CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"])]
    with pytest.raises(Exception):
        migrate(backend, broken)
    with backend.connect() as db, pytest.raises(Exception):
        db.execute("SELECT id FROM jobs")  # one transaction: not even the first migrations were applied
    assert migrate(backend) == (0, LATEST)
    with pytest.raises(Exception):
        migrate(backend, broken)
    assert version(backend) == LATEST  # the failed step left the database at the version before it
    with backend.connect() as db, pytest.raises(Exception):
        db.execute("SELECT x FROM extra")


def test_a_newer_database_is_refused_untouched(tmp_path, backend_url):
    store = Store(tmp_path, backend_url)
    store.add_sample("s_1", 2, 2, {}, "upload", "s_1.png")
    with store.db.connect() as db:
        db.execute(store.db.sql("UPDATE schema_version SET version = ?"), (LATEST + 5,))
    with pytest.raises(DatabaseError, match=rf"schema version {LATEST + 5}, newer than this landsentry knows \(up to {LATEST}\)"):
        Store(tmp_path, backend_url)
    assert version(store.db) == LATEST + 5 and [s["id"] for s in store.list_samples()] == ["s_1"]


def test_unreachable_or_wrong_database_url_is_one_clear_message(tmp_path, postgres):
    from tests.postgres import free_port

    url = f"postgresql://someone:secret@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(DatabaseError) as caught:
        Store(tmp_path, url)
    message = str(caught.value)
    assert message.startswith("cannot use the database postgresql://someone:***@127.0.0.1") and "secret" not in message
    assert "LANDSENTRY_DATABASE_URL" in message and caught.value.http_status == 503
    with pytest.raises(DatabaseError, match="does not exist"):
        Store(tmp_path, postgres.url("no_such_database"))
    with pytest.raises(InputError, match="LANDSENTRY_DATABASE_URL='mysql://u:\\*\\*\\*@h/db': .*PostgreSQL URL"):
        Settings.from_env(database_url="mysql://u:pw@h/db")
    assert redact("postgresql://a:b@h:1/d") == "postgresql://a:***@h:1/d" and redact("postgresql://h/d") == "postgresql://h/d"


def test_serve_refuses_an_unreachable_database_in_one_line(tmp_path, cli, monkeypatch):
    from tests.postgres import free_port

    monkeypatch.setenv("LANDSENTRY_DATABASE_URL", f"postgresql://u:pw@127.0.0.1:{free_port()}/x")
    code, out, err = cli(["serve", "--data-dir", tmp_path / "data"])
    assert code == 2 and "cannot use the database postgresql://u:***@127.0.0.1" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_requests_while_the_database_is_away_get_503_then_recover(tmp_path, tiny_checkpoint, database_url, postgres):
    import psycopg
    from fastapi.testclient import TestClient

    from landsentry.api.app import create_app

    settings = Settings.from_env(data_dir=tmp_path / "data", model=tiny_checkpoint, worker=False, database_url=database_url)
    name = database_url.rsplit("/", 1)[1]
    with TestClient(create_app(settings)) as client, psycopg.connect(postgres.url(), autocommit=True) as admin:
        assert client.get("/v1/jobs").status_code == 200
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            for _ in range(2):  # a broken pooled connection, then a refused new one
                answer = client.get("/v1/jobs")
                assert answer.status_code == 503 and f"the database {database_url}" in answer.json()["detail"], answer.text
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert client.get("/v1/jobs").status_code == 200  # broken connections were dropped, not reused
