"""Jobs can be cancelled, a huge job does not starve small ones, and a killed process leaves no temporary folders.

The app runs with its real worker process and a tiny random-weight model. The huge job is the
issue's case: a sparse GeoTIFF (a few KB on disk) that declares 12000x12000 pixels, made here from a
real NAIP crop placed in an otherwise empty scene.
"""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from landsentry.api.app import create_app
from landsentry.api.settings import Settings
from tests.bad_files import sparse_scene
from tests.test_api_restart import processes_using

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def small_image(seed: int = 0) -> bytes:
    return png(np.random.default_rng(seed).integers(0, 255, (96, 128, 3), dtype=np.uint8))


def wait_for(client: TestClient, job_id: str, states: tuple[str, ...], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {states}: {job}")


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_checkpoint):
    settings = Settings.from_env(data_dir=tmp_path_factory.mktemp("lanes"), model=tiny_checkpoint, replay=(),
                                 inline_max_pixels=64 * 64, small_job_max_pixels=1_000_000, max_train_epochs=50, max_train_steps=2000)
    with TestClient(create_app(settings)) as c:
        c.settings = settings
        yield c


def test_a_huge_job_does_not_starve_a_small_one_and_is_cancelled_while_running(client, shared_file, tmp_path):
    huge_file = sparse_scene(tmp_path / "sparse.tif", shared_file)
    with huge_file.open("rb") as fh:
        huge = client.post("/v1/interpret", files={"image": ("sparse.tif", fh)})
    assert huge.status_code == 202, huge.text
    huge_id = huge.json()["id"]
    wait_for(client, huge_id, ("running",))
    small = client.post("/v1/interpret", files={"image": ("small.png", small_image())})
    assert small.status_code == 202, small.text
    done = wait_for(client, small.json()["id"], ("done", "failed"))
    assert done["status"] == "done", done["error"]
    assert client.get(f"/v1/jobs/{huge_id}").json()["status"] == "running"  # the small one went past it

    job_dir = client.settings.data_dir / "jobs" / huge_id
    assert list(job_dir.glob(".out-*")), "the huge job is writing its results"
    started = time.monotonic()
    r = client.post(f"/v1/jobs/{huge_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    while job_dir.exists():  # the worker stops and removes the partial files
        assert time.monotonic() - started < 10, "a running interpretation must stop within seconds"
        time.sleep(0.1)
    time.sleep(1.0)
    job = client.get(f"/v1/jobs/{huge_id}").json()
    assert job["status"] == "cancelled" and job["result"] is None  # nothing overwrote the cancel
    assert client.post(f"/v1/jobs/{huge_id}/cancel").json()["status"] == "cancelled"  # again: answered as it is
    r = client.post(f"/v1/jobs/{done['id']}/cancel")
    assert r.status_code == 409 and "already finished" in r.json()["detail"]
    assert client.post("/v1/jobs/j_nope/cancel").status_code == 404


def test_a_running_training_is_cancelled_and_its_process_stops(client):
    rng = np.random.default_rng(3)
    for seed in range(2):
        image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        mask = np.zeros((96, 128), np.uint8)
        mask[20:60, 30:90] = 1
        r = client.post("/v1/samples", files={"image": (f"s{seed}.png", png(image)), "mask": ("m.png", png(mask))})
        assert r.status_code == 201, r.text
    job = client.post("/v1/train", json={"epochs": 50, "steps_per_epoch": 2000}).json()
    job_dir = client.settings.data_dir / "jobs" / job["id"]
    deadline = time.monotonic() + 120
    while not processes_using(job_dir / "train.json"):
        assert time.monotonic() < deadline, client.get(f"/v1/jobs/{job['id']}").json()
        time.sleep(0.2)
    started = time.monotonic()
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    while processes_using(job_dir / "train.json") or job_dir.exists():
        assert time.monotonic() - started < 15, "the training process must stop within seconds"
        time.sleep(0.2)
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    assert len(client.get("/v1/models").json()["models"]) == 1  # no version came of it


def test_a_queued_job_that_is_cancelled_never_runs(tmp_path, tiny_checkpoint):
    settings = Settings.from_env(data_dir=tmp_path, model=tiny_checkpoint, worker=False, inline_max_pixels=64 * 64)
    with TestClient(create_app(settings)) as c:
        queued = c.post("/v1/interpret", files={"image": ("q.png", small_image())}).json()
        assert queued["status"] == "queued"
        cancelled = c.post(f"/v1/jobs/{queued['id']}/cancel").json()
        assert cancelled["status"] == "cancelled" and cancelled["message"] == "cancelled"
        assert not (tmp_path / "jobs" / queued["id"]).exists()
        assert c.app.state.store.claim_job("interpret", "test") is None  # nothing left for a worker to take


def test_leftovers_of_a_killed_process_are_removed_at_start(tmp_path, tiny_checkpoint):
    settings = Settings.from_env(data_dir=tmp_path, model=tiny_checkpoint, worker=False, inline_max_pixels=64 * 64)
    with TestClient(create_app(settings)) as c:
        queued = c.post("/v1/interpret", files={"image": ("q.png", small_image())}).json()
        store = c.app.state.store
        store.claim_job("interpret", "worker:1")  # a worker took it ...
        store.cancel_job(queued["id"])  # ... and was cancelled while it died: its files stayed
    job_dir = tmp_path / "jobs" / queued["id"]
    (job_dir / ".out-killed" / ".partial-x").mkdir(parents=True)  # kill -9 during an interpretation
    (tmp_path / "jobs" / "j_other" / ".out-abc").mkdir(parents=True)
    (tmp_path / "samples" / ".incoming-xyz").mkdir(parents=True)  # kill -9 during a sample upload
    with TestClient(create_app(settings)):
        assert not job_dir.exists()
        assert not list((tmp_path / "jobs").glob("*/.out-*")) and not list((tmp_path / "samples").glob(".incoming-*"))
        assert (tmp_path / "jobs" / "j_other").is_dir()  # only the temporary folder went
