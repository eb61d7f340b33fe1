"""A worker that lost its job's lease (it stalled past it and another worker took the job over) stops and changes
nothing - not the job's record, not its flags, not its input files - on both backends; it says so in one line."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from landsentry.api.heartbeat import Heartbeat, sweep
from landsentry.api.settings import Settings
from landsentry.api.store import Store
from landsentry.api.versions import ModelHolder, register_initial
from landsentry.api.worker import interpret_one

PARAMS = {"names": {"after": "scene.png"}, "bands": None, "wgs84": False, "pixels": 64 * 64}


@pytest.fixture
def taken_over(tmp_path, tiny_checkpoint, backend_url):
    """(store, settings, the stalled worker's heartbeat, its claimed job, the job as the new owner holds it)."""
    store = Store(tmp_path / "data", backend_url)
    register_initial(store, tiny_checkpoint)
    inputs = store.job_dir("j_1") / "input"
    inputs.mkdir(parents=True)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
    (inputs / "after.png").write_bytes(buffer.getvalue())
    store.create_job("j_1", "interpret", PARAMS, kind="single")
    beat = Heartbeat(store, "worker:stalled:1", lease_s=0.2)
    job = store.claim_job("interpret", beat.owner, lease_s=0.2)
    beat.hold("j_1")
    time.sleep(0.4)
    assert [j["id"] for j in sweep(store)] == ["j_1"]
    taken = store.claim_job("interpret", "worker:other:2", lease_s=60)
    settings = Settings.from_env(data_dir=tmp_path / "data", model=tiny_checkpoint, worker=False, database_url=backend_url)
    return store, settings, beat, job, taken


def unchanged(store: Store, taken: dict) -> None:
    now = store.get_job("j_1")
    keys = ("status", "owner", "attempts", "progress", "message", "result", "error")
    assert {k: now[k] for k in keys} == {k: taken[k] for k in keys}
    assert store.flag_rows("job = ?", ("j_1",), 10) == []
    assert (store.job_dir("j_1") / "input" / "after.png").is_file()
    assert not list(store.job_dir("j_1").glob(".out-*"))


def test_lost_lease_noticed_by_the_heartbeat_stops_before_any_work(taken_over, capsys):
    store, settings, beat, job, taken = taken_over
    beat.beat()
    assert beat.lost("j_1")
    interpret_one(store, settings, beat, ModelHolder(store), job)
    assert "lost the lease of job j_1" in capsys.readouterr().out
    unchanged(store, taken)
    assert not (store.job_dir("j_1") / "out").exists()


def test_lost_lease_found_at_completion_changes_no_record(taken_over, capsys):
    """The heartbeat had not beaten yet: the work runs to the end, and the guarded completion refuses it."""
    store, settings, beat, job, taken = taken_over
    interpret_one(store, settings, beat, ModelHolder(store), job)
    assert "lost the lease of job j_1" in capsys.readouterr().out
    unchanged(store, taken)
    assert store.finish_job("j_1", {"file_names": []}, holder="worker:other:2")  # the new owner still completes it
