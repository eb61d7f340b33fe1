"""The SQLite store: restart recovery rules, one train job at a time, claims, idempotent model registration."""
from __future__ import annotations

from landsentry.api.store import MAX_ATTEMPTS, Store


def test_recovery_requeues_or_fails_with_a_reason(tmp_path):
    store = Store(tmp_path)
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


def test_claims_are_oldest_first_and_exclusive(tmp_path):
    store = Store(tmp_path)
    store.create_job("j_1", "interpret", {})
    store.create_job("j_2", "interpret", {})
    store.create_job("j_3", "train", {})
    first = store.claim_job("interpret", "w1")
    assert first["id"] == "j_1" and first["status"] == "running" and first["attempts"] == 1
    assert store.claim_job("interpret", "w2")["id"] == "j_2"
    assert store.claim_job("interpret", "w3") is None


def test_only_one_train_job_queued_or_running(tmp_path):
    store = Store(tmp_path)
    assert store.create_train_job("j_1", {}) is not None
    assert store.create_train_job("j_2", {}) is None
    store.fail_job("j_1", "because")
    assert store.create_train_job("j_3", {}) is not None


def test_models_register_once_and_survive_reopening(tmp_path):
    store = Store(tmp_path)
    store.add_model("m_1", "first", None, "m_1.pt", {"a": 1}, {"miou": 0.5})
    store.add_model("m_1", "again", None, "m_1.pt", {}, {})  # a resumed job registering twice
    store.set_active_model("m_1")
    reopened = Store(tmp_path)
    assert [m["name"] for m in reopened.list_models()] == ["first"]
    assert reopened.active_model_id() == "m_1" and reopened.get_model("m_1")["metrics"] == {"miou": 0.5}
