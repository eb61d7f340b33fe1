"""The store on both backends (SQLite and a real PostgreSQL): recovery, claims, leases, guarded transitions,
one train job at a time, idempotent model registration, flags registered with the job's completion."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from landsentry.api.heartbeat import Heartbeat, sweep
from landsentry.api.store import MAX_ATTEMPTS, Store


def test_recovery_requeues_or_fails_with_a_reason(tmp_path, backend_url):
    store = Store(tmp_path, backend_url)
    for job_id in ("j_a", "j_b", "j_c", "j_t"):
        (store.job_dir(job_id) / "input").mkdir(parents=True)
    store.create_job("j_a", "interpret", {}, status="running", owner="server")
    store.create_job("j_b", "interpret", {}, status="running", owner="server")
    store.update_job("j_b", attempts=MAX_ATTEMPTS)
    store.create_job("j_c", "interpret", {}, status="running")
    store.delete_job("j_c")  # its record goes with its files
    store.create_job("j_d", "interpret", {}, status="running")  # files never written
    store.create_job("j_t", "train", {"epochs": 2}, status="running")
    store.create_job("j_done", "interpret", {}, status="done")
    touched = {j["id"]: j for j in store.recover()}
    assert set(touched) == {"j_a", "j_b", "j_d", "j_t"}
    assert touched["j_a"]["status"] == "queued" and "restart" in touched["j_a"]["message"]
    assert touched["j_b"]["status"] == "failed" and "giving up" in touched["j_b"]["error"]
    assert touched["j_d"]["status"] == "failed" and "input files are gone" in touched["j_d"]["error"]
    assert touched["j_t"]["status"] == "queued" and "resume" in touched["j_t"]["message"]
    assert store.get_job("j_done")["status"] == "done"
    assert store.recover() == []  # nothing left running


def test_claims_are_oldest_first_and_exclusive(tmp_path, backend_url):
    store = Store(tmp_path, backend_url)
    store.create_job("j_1", "interpret", {"pixels": 100})
    store.create_job("j_2", "interpret", {"pixels": 10})
    store.create_job("j_3", "train", {})
    assert store.claim_job("interpret", "small", max_pixels=50)["id"] == "j_2"  # the small lane passes the large job
    first = store.claim_job("interpret", "w1")
    assert first["id"] == "j_1" and first["status"] == "running" and first["attempts"] == 1 and first["owner"] == "w1"
    assert store.claim_job("interpret", "w3") is None


def test_many_workers_claim_every_job_exactly_once(tmp_path, backend_url):
    """Four workers (each its own Store, as in separate processes) drain 60 jobs at once: no job twice, none left."""
    Store(tmp_path, backend_url)
    jobs = [f"j_{i:03d}" for i in range(60)]
    for job_id in jobs:
        Store(tmp_path, backend_url).create_job(job_id, "interpret", {"pixels": 1})
    start = threading.Barrier(4)

    def drain(worker: int) -> list[str]:
        store, mine = Store(tmp_path, backend_url), []
        start.wait()
        while (job := store.claim_job("interpret", f"w{worker}", max_pixels=None if worker % 2 else 10)) is not None:
            mine.append(job["id"])
            assert store.finish_job(job["id"], {"n": 1}, holder=f"w{worker}")
        return mine

    with ThreadPoolExecutor(4) as pool:
        claimed = [j for mine in pool.map(drain, range(4)) for j in mine]
    assert sorted(claimed) == jobs
    store = Store(tmp_path, backend_url)
    assert store.count_jobs() == {"done": 60}
    assert {store.get_job(j)["attempts"] for j in jobs} == {1}


def test_expired_lease_is_taken_over_and_completes_once(tmp_path, backend_url):
    store = Store(tmp_path, backend_url)
    (store.job_dir("j_1") / "input").mkdir(parents=True)
    store.create_job("j_1", "interpret", {})
    assert store.claim_job("interpret", "dead", lease_s=0.3)["id"] == "j_1"
    assert sweep(store) == []  # still leased
    time.sleep(0.6)
    swept = sweep(store)
    assert [j["id"] for j in swept] == ["j_1"] and swept[0]["status"] == "queued" and "lease" in swept[0]["message"]
    assert sweep(store) == []  # a second sweeper finds nothing to do
    taken = store.claim_job("interpret", "alive", lease_s=30)
    assert taken["id"] == "j_1" and taken["attempts"] == 2
    # the stalled first owner wakes up: it can no longer change, finish or fail the job
    assert not store.update_job("j_1", "dead", progress=0.5)
    assert not store.finish_job("j_1", {"by": "dead"}, holder="dead")
    assert not store.fail_job("j_1", "late", holder="dead")
    assert store.finish_job("j_1", {"by": "alive"}, holder="alive", flags=[{"kind": "road", "suspected": 0, "reason": ""}])
    assert not store.finish_job("j_1", {"by": "alive again"}, holder="alive")  # done once
    job = store.get_job("j_1")
    assert job["status"] == "done" and job["result"] == {"by": "alive"} and job["lease_until"] is None
    assert len(store.flag_rows("job = ?", ("j_1",), 10)) == 1


def test_heartbeat_keeps_the_lease_and_notices_losing_it(tmp_path, backend_url):
    store = Store(tmp_path, backend_url)
    (store.job_dir("j_1") / "input").mkdir(parents=True)
    store.create_job("j_1", "interpret", {})
    beat = Heartbeat(store, "w1", lease_s=0.6)
    store.claim_job("interpret", "w1", lease_s=0.6)
    beat.hold("j_1")
    beat.start()
    try:
        time.sleep(1.5)  # over twice the lease: only the renewals keep it
        assert sweep(store) == [] and not beat.lost("j_1")
    finally:
        beat.stop()
    time.sleep(0.8)
    assert [j["id"] for j in sweep(store)] == ["j_1"]
    beat.beat()
    assert beat.lost("j_1")
    assert store.claim_job("interpret", "w2")["attempts"] == 2


def test_interrupted_too_often_fails_instead_of_looping(tmp_path, backend_url):
    store = Store(tmp_path, backend_url)
    (store.job_dir("j_1") / "input").mkdir(parents=True)
    store.create_job("j_1", "interpret", {})
    for attempt in range(MAX_ATTEMPTS):
        assert store.claim_job("interpret", f"w{attempt}", lease_s=0.05)["attempts"] == attempt + 1
        time.sleep(0.15)
        sweep(store)
    job = store.get_job("j_1")
    assert job["status"] == "failed" and "giving up" in job["error"]


def test_only_one_train_job_queued_or_running(tmp_path, backend_url):
    store = Store(tmp_path, backend_url)
    assert store.create_train_job("j_1", {}) is not None
    assert store.create_train_job("j_2", {}) is None
    store.fail_job("j_1", "because")
    assert store.create_train_job("j_3", {}) is not None


def test_concurrent_train_requests_queue_one_job(tmp_path, backend_url):
    Store(tmp_path, backend_url)
    start = threading.Barrier(6)

    def ask(i: int) -> bool:
        store = Store(tmp_path, backend_url)
        start.wait()
        return store.create_train_job(f"j_{i}", {}) is not None

    with ThreadPoolExecutor(6) as pool:
        assert sum(pool.map(ask, range(6))) == 1


def test_cancel_is_final(tmp_path, backend_url):
    store = Store(tmp_path, backend_url)
    store.create_job("j_1", "interpret", {})
    store.claim_job("interpret", "w1")
    assert store.cancel_job("j_1")["status"] == "cancelled"
    assert not store.finish_job("j_1", {}, holder="w1") and not store.finish_job("j_1", {})
    assert store.get_job("j_1")["status"] == "cancelled" and store.flag_rows("job = ?", ("j_1",), 10) == []


def test_models_register_once_and_survive_reopening(tmp_path, backend_url):
    store = Store(tmp_path, backend_url)
    store.add_model("m_1", "first", None, "m_1.pt", {"a": 1}, {"miou": 0.5})
    store.add_model("m_1", "again", None, "m_1.pt", {}, {})  # a resumed job registering twice
    store.set_active_model("m_1")
    store.add_sample("s_1", 4, 3, {"road": 12}, "upload", "s_1.png")
    reopened = Store(tmp_path, backend_url)
    assert [m["name"] for m in reopened.list_models()] == ["first"]
    assert reopened.active_model_id() == "m_1" and reopened.get_model("m_1")["metrics"] == {"miou": 0.5}
    assert [(s["id"], s["class_pixels"]) for s in reopened.list_samples()] == [("s_1", {"road": 12})]
