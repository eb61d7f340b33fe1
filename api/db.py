"""The two database backends of the store: SQLite (embedded, one server) and PostgreSQL (replicas).

The store's SQL is written once, with `?` placeholders and a few dialect words (`{epoch}`: seconds
since 1970 on the database's own clock, so every replica judges leases by one clock). Each backend
hands out connections in autocommit mode - every statement is its own transaction - and
`transaction()` for the few multi-statement changes that must be all or nothing. SQLite opens one
connection per call (cheap, safe across threads and processes); PostgreSQL keeps a small pool,
as its connections are processes.
"""
from __future__ import annotations

import queue
import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from landsentry.models.vocabulary.errors import LandsentryError

POOL_SIZE = 8
CONNECT_TIMEOUT_S = 10


class DatabaseError(LandsentryError):
    """The database cannot be used (unreachable, refused, newer schema): a message for people, HTTP 503."""

    http_status = 503


def redact(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class SQLiteDB:
    """One file under the data directory (WAL); only one server may use it (api/app.py holds a lock)."""

    name = "sqlite"
    shared = False  # one server per data directory
    words = {"epoch": "((julianday('now') - 2440587.5) * 86400.0)", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
             "real": "REAL", "bool": "INTEGER", "skip_locked": "", "json_pixels": "json_extract(params, '$.pixels')"}

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock first, so the statements inside see no concurrent writer."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def sql(self, text: str) -> str:
        return text.format(**self.words)

    @staticmethod
    def rows(cursor: Any) -> list[dict]:
        return [dict(r) for r in cursor.fetchall()]

    def lock_migrations(self, db: sqlite3.Connection) -> None:
        pass  # BEGIN IMMEDIATE already excludes other writers

    def close(self) -> None:
        pass


class PostgresDB:
    """A PostgreSQL database that several replicas share (LANDSENTRY_DATABASE_URL)."""

    name = "postgresql"
    shared = True  # replicas: many servers and workers on one database
    words = {"epoch": "extract(epoch from clock_timestamp())::double precision", "serial": "BIGSERIAL PRIMARY KEY",
             "real": "DOUBLE PRECISION", "bool": "INTEGER", "skip_locked": "FOR UPDATE SKIP LOCKED",
             "json_pixels": "(params::json->>'pixels')::bigint"}
    MIGRATION_LOCK = 7160_2026  # pg_advisory_xact_lock key: replicas starting together migrate one after another

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        import psycopg  # only deployments with a database URL need it

        self.psycopg = psycopg
        self.url, self.where = url, redact(url)
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        with self.connect() as db:
            db.execute("SELECT 1")

    def _open(self) -> Any:
        from psycopg.rows import dict_row

        try:
            return self.psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S,
                                        application_name="landsentry")
        except self.psycopg.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            raise DatabaseError(f"cannot use the database {self.where} (LANDSENTRY_DATABASE_URL): {reason}") from None

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A pooled connection; one that broke (server restarted, network) is dropped, not reused."""
        self._slots.acquire()
        db = None
        try:
            try:
                db = self._idle.get_nowait()
                if db.closed or db.broken:
                    db = None
            except queue.Empty:
                pass
            db = db or self._open()
            yield db
        except self.psycopg.OperationalError as exc:
            if db is not None:
                db.close()
                db = None
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            raise DatabaseError(f"the database {self.where} failed: {reason}") from exc
        finally:
            if db is not None:
                if db.info.transaction_status != self.psycopg.pq.TransactionStatus.IDLE:
                    db.close()  # left inside a transaction by an error: never hand it out again
                else:
                    self._idle.put(db)
            self._slots.release()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.connect() as db, db.transaction():
            yield db

    _PLACEHOLDER = re.compile(r"\?")

    def sql(self, text: str) -> str:
        return self._PLACEHOLDER.sub("%s", text.format(**self.words))

    @staticmethod
    def rows(cursor: Any) -> list[dict]:
        return list(cursor.fetchall())

    def lock_migrations(self, db: Any) -> None:
        db.execute("SELECT pg_advisory_xact_lock(%s)", (self.MIGRATION_LOCK,))

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def open_database(data_dir: Path, url: str | None) -> SQLiteDB | PostgresDB:
    """PostgreSQL when a URL is given, else the embedded SQLite file in the data directory."""
    if url:
        return PostgresDB(url)
    return SQLiteDB(data_dir / "landsentry.db")
