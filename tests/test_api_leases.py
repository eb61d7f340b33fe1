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


def test_database_gone_mid_job_leaves_the_job_to_run_again(tmp_path, tiny_checkpoint, database_url, postgres, capsys):
    """PostgreSQL refuses connections while a job runs: the worker says so in one line and records nothing; once
    the database is back, the job's lease runs out and it is queued again - not lost, not half done."""
    import psycopg

    store = Store(tmp_path / "data", database_url)
    register_initial(store, tiny_checkpoint)
    inputs = store.job_dir("j_1") / "input"
    inputs.mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(inputs / "after.png")
    store.create_job("j_1", "interpret", PARAMS, kind="single")
    beat = Heartbeat(store, "worker:w:1", lease_s=0.5)
    job = store.claim_job("interpret", beat.owner, lease_s=0.5)
    beat.hold("j_1")
    holder = ModelHolder(store)
    holder.ensure()
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            interpret_one(store, Settings.from_env(data_dir=tmp_path / "data", model=tiny_checkpoint, worker=False,
                                                   database_url=database_url), beat, holder, job)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    said = [line for line in capsys.readouterr().out.splitlines() if "j_1" in line]
    assert len(said) == 1 and f"the database {database_url}" in said[0] and "runs again" in said[0], said
    time.sleep(0.7)
    assert [j["status"] for j in sweep(store)] == ["queued"]
    assert store.flag_rows("job = ?", ("j_1",), 10) == [] and not list(store.job_dir("j_1").glob(".out-*"))
