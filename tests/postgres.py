"""A throwaway PostgreSQL 15 for the tests: `initdb` into a temporary folder, `pg_ctl` on a free loopback port.

No mock database: the store's tests and the replica tests run against this real server. It is started
once per test session (the `postgres` fixture in conftest.py) and stopped after; each test that needs
a database gets a fresh one (`CREATE DATABASE`). As root, the server runs as the `postgres` user
(initdb refuses root). Missing binaries: a failure under CI=true, a skip elsewhere.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.serving import free_port

BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")
USER = "landsentry"


def find_binary(name: str) -> str | None:
    for folder in BIN_DIRS:
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


@dataclass
class PostgresServer:
    folder: Path
    port: int
    as_user: list[str]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        pg_ctl = find_binary("pg_ctl")
        subprocess.run([*self.as_user, pg_ctl, "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """initdb + pg_ctl start on a free port (loopback only, trust auth, no fsync: a test server)."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise FileNotFoundError("PostgreSQL 15 server binaries (initdb, pg_ctl) not found; install Debian's postgresql package")
    folder = Path(tempfile.mkdtemp(prefix="landsentry-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = folder / "data", folder / "server.log"
    run = dict(capture_output=True, text=True, timeout=120)
    made = subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync"], **run)
    if made.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {made.stderr[-2000:]}")
    for attempt in range(3):  # the free port can be taken between asking and binding
        port = free_port()
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200"
        started = subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"], **run)
        if started.returncode == 0:
            return PostgresServer(folder, port, as_user)
    text = log.read_text()[-2000:] if log.is_file() else started.stderr
    shutil.rmtree(folder, ignore_errors=True)
    raise RuntimeError(f"pg_ctl start failed: {text}")
