"""Two replicas (`landsentry serve` + its worker each, on different ports) on one PostgreSQL and one data directory.

100 small interpretations posted alternately are each done exactly once (rows and result files), none lost;
activating a version on A changes what B serves within seconds; both answer the one flag register; a replica
whose worker is killed (kill -9) mid-job loses the job to the other replica once its lease runs out, and
samples and versions stay intact. Tiny images, a tiny random-weight model, one thread per process, short leases.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landsentry.api.store import Store
from tests.conftest import ROOT
from tests.serving import call, free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc, SIGSTOP and SIGKILL")
LEASE_S = 5
START_S = 180


def upload(files: dict[str, bytes]) -> tuple[bytes, dict]:
    boundary = "landsentryreplicas"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for name, data in files.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def image(seed: int, side: int) -> bytes:
    """Smooth blocks with a little noise: a few regions, not thousands of specks."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(40, 220, (4, 4, 3), dtype=np.uint8)
    big = np.kron(blocks, np.ones((side // 4, side // 4, 1), np.uint8))
    return png(np.clip(big + rng.integers(0, 8, big.shape), 0, 255).astype(np.uint8))


class Replica:
    """`landsentry serve` on its own port; the worker is its child process."""

    def __init__(self, name: str, data: Path, env: dict[str, str]) -> None:
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data.parent / f"replica-{name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "landsentry", "serve", "--port", str(self.port), "--data-dir",
                                          str(data), "--log-level", "warning"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_S
        while True:
            assert self.proc.poll() is None, f"replica {self.name} exited:\n{self.log_path.read_text()[-3000:]}"
            try:
                status, health = call(self.url + "/v1/health")
                if status == 200 and health["worker"] == "running" and self.worker_pid() is not None:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"replica {self.name} did not start:\n{self.log_path.read_text()[-3000:]}"
            time.sleep(0.3)

    def worker_pid(self) -> int | None:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        for pid in map(int, children):
            try:
                if b"landsentry.api.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except OSError:
                pass
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres, tiny_checkpoint):
    """(A, B, database URL, data directory): both replicas started at once on an empty database."""
    url = postgres.create_database(f"replicas_{secrets.token_hex(4)}")
    data = tmp_path_factory.mktemp("replicas") / "data"
    env = {**os.environ, "LANDSENTRY_DATABASE_URL": url, "LANDSENTRY_MODEL": str(tiny_checkpoint), "LANDSENTRY_REPLAY": "none",
           "LANDSENTRY_INLINE_MAX_PIXELS": "1",  # every interpretation becomes a queued job for the workers
           "LANDSENTRY_LEASE_S": str(LEASE_S), "LANDSENTRY_VERSION_CHECK_S": "1", "LANDSENTRY_THREADS": "1",
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("LANDSENTRY_TOKEN", None)
    replicas = [Replica("a", data, env), Replica("b", data, env)]
    try:
        for replica in replicas:
            replica.wait_ready()
        yield replicas[0], replicas[1], url, data
    finally:
        for replica in replicas:
            replica.stop()


def wait_done(store: Store, job_ids: list[str], timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = [store.get_job(j) for j in job_ids]
        if all(j["status"] in ("done", "failed", "cancelled") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, [(j["id"], j["status"], j["message"]) for j in jobs if j["status"] != "done"][:5]
        time.sleep(0.5)


def test_both_replicas_started_on_one_first_version(cluster):
    a, b, url, data = cluster
    models_a, models_b = call(a.url + "/v1/models")[1], call(b.url + "/v1/models")[1]
    assert models_a == models_b and len(models_a["models"]) == 1  # started at once: registered once, not twice
    assert not (data / "server.lock").exists() and len(list((data / "replicas").iterdir())) == 2


def test_hundred_jobs_posted_alternately_are_each_done_once(cluster):
    a, b, url, data = cluster
    store = Store(data, url)

    def post(i: int) -> tuple[int, dict]:
        return call((a if i % 2 == 0 else b).url + "/v1/interpret", "POST", *upload({"image": image(i, 32)}))

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(100)))
    assert [status for status, _ in answers] == [202] * 100, [body for status, body in answers if status != 202][:3]
    ids = [body["id"] for _, body in answers]
    assert len(set(ids)) == 100
    jobs = wait_done(store, ids, timeout_s=600)
    assert [j["status"] for j in jobs] == ["done"] * 100, [j["error"] for j in jobs if j["status"] != "done"][:3]
    assert [j["attempts"] for j in jobs] == [1] * 100  # claimed once each: never run twice
    owners = {j["owner"] for j in jobs}
    assert len(owners) == 2 and all(o.startswith("worker:") for o in owners), owners  # both replicas' workers took a share
    for job in jobs:
        out = data / "jobs" / job["id"] / "out"
        assert sorted(p.name for p in out.iterdir()) == job["result"]["file_names"]
        features = json.loads((out / "flags.geojson").read_text())["features"]
        assert len(store.flag_rows("job = ?", (job["id"],), 10_000)) == len(features)  # registered once, all of them
    assert not list((data / "jobs").glob("*/.out-*"))  # no half-written results left
    listed = {j["id"] for j in call(b.url + "/v1/jobs")[1]["jobs"]}
    assert set(ids) <= listed  # one queue: B lists A's jobs too
    flags_a, flags_b = call(a.url + "/v1/flags?limit=10000")[1], call(b.url + "/v1/flags?limit=10000")[1]
    assert flags_a == flags_b and len(flags_a["features"]) == len(store.flag_rows("1 = 1", (), 100_000))


def test_activating_a_version_on_a_changes_what_b_serves(cluster, tiny_checkpoint):
    a, b, url, data = cluster
    store = Store(data, url)
    first = call(b.url + "/v1/health")[1]["model"]["id"]
    shutil.copy(tiny_checkpoint, data / "models" / "m_second.pt")
    store.add_model("m_second", "second", first, "m_second.pt", {}, {"miou": None, "evaluated_on": "nothing"})
    status, body = call(a.url + "/v1/models/m_second/activate", "POST")
    assert status == 200 and body["active"] is True
    deadline = time.monotonic() + 10
    while call(b.url + "/v1/health")[1]["model"]["id"] != "m_second":
        assert time.monotonic() < deadline, "replica B still serves the old version"
        time.sleep(0.2)
    status, job = call(b.url + "/v1/interpret", "POST", *upload({"image": image(500, 32)}))
    assert status == 202
    assert wait_done(store, [job["id"]], 120)[0]["result"]["model"] == "m_second"
    assert call(a.url + "/v1/models")[1]["active"] == call(b.url + "/v1/models")[1]["active"] == "m_second"


def test_killed_worker_loses_its_job_to_the_other_replica(cluster):
    """B's worker is paused so A's takes the job; A's server is paused (no restart of its worker) and its worker
    killed mid-job; B resumes, and takes the job over once the lease has run out."""
    a, b, url, data = cluster
    store = Store(data, url)
    status, _ = call(a.url + "/v1/samples", "POST", *upload({"image": image(7, 64), "mask": png(np.ones((64, 64), np.uint8))}))
    assert status == 201
    samples, models = call(a.url + "/v1/samples")[1], call(a.url + "/v1/models")[1]
    worker_a, worker_b = a.worker_pid(), b.worker_pid()
    os.kill(worker_b, signal.SIGSTOP)
    try:
        status, job = call(a.url + "/v1/interpret", "POST", *upload({"image": image(99, 1024)}))
        assert status == 202
        deadline = time.monotonic() + 120
        while (record := store.get_job(job["id"]))["status"] != "running" or record["progress"] <= 0:
            assert record["status"] in ("queued", "running") and time.monotonic() < deadline, record
            time.sleep(0.05)
        assert record["owner"].endswith(f":{worker_a}")
        os.kill(a.proc.pid, signal.SIGSTOP)  # its supervisor must not restart the worker and requeue at once
        os.kill(worker_a, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        os.kill(worker_b, signal.SIGCONT)
    try:
        done = wait_done(store, [job["id"]], 300)[0]
        assert done["status"] == "done", done["error"]
        assert time.monotonic() - killed >= LEASE_S * 0.8  # not before the lease ran out
        assert done["owner"].endswith(f":{worker_b}") and done["attempts"] == 2
        out = data / "jobs" / job["id"] / "out"
        assert sorted(p.name for p in out.iterdir()) == done["result"]["file_names"]
        assert not list((data / "jobs" / job["id"]).glob(".out-*"))
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    a.wait_ready()  # A's supervisor starts a new worker; its late recovery of the dead worker changes nothing
    time.sleep(3)
    again = store.get_job(job["id"])
    assert again["status"] == "done" and again["attempts"] == 2 and again["owner"] == done["owner"]
    assert call(b.url + "/v1/samples")[1] == samples and call(b.url + "/v1/models")[1] == models
    for sample in samples["samples"]:
        assert (data / "samples" / "masks" / f"{sample['id']}.png").is_file()
