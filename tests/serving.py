"""`landsentry serve` as a separate process for tests that need the real server (the browser, schemathesis)."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT

SERVER_START_S = 180  # model loading on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """(status, JSON body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


@contextlib.contextmanager
def serve(data: Path, **env_extra: str) -> Iterator[str]:
    """Run `landsentry serve` on a free port with data in `data`; yields its base URL, stops it after."""
    log_path = data.parent / f"{data.name}.log"
    env = {**os.environ, "LANDSENTRY_THREADS": os.environ.get("LANDSENTRY_TEST_THREADS", "2"), "PYTHONUNBUFFERED": "1",
           **env_extra}
    if "LANDSENTRY_TOKEN" not in env_extra:
        env.pop("LANDSENTRY_TOKEN", None)
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "landsentry", "serve", "--port", str(port),
                                 "--data-dir", str(data), "--log-level", "warning"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"landsentry serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if get_json(base + "/v1/health")["status"] == "ok":
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"landsentry serve did not answer within {SERVER_START_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
