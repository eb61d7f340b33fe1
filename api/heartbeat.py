"""Job leases: a process renews the leases of the jobs it runs, and notices when it has lost one.

A job claimed by a worker (or run inline by a server) is the owner's for `lease_s` seconds; this
thread renews it every third of that. When a renewal finds the job no longer the owner's - it was
cancelled, or the process stalled past its lease and another replica took the job over - the job is
marked lost, and the thread running it stops at its next check (api/cancel.py) without touching the
job's record or files, which are no longer its own. Meanwhile other replicas sweep the jobs whose
leases ran out (`sweep`): a dead worker's job is queued again and another worker takes it.
"""
from __future__ import annotations

import logging
import os
import socket
import threading

from landsentry.api.store import Store

log = logging.getLogger("landsentry.heartbeat")


def process_owner(role: str) -> str:
    """An owner name unique across replicas on several machines: role, host and process id."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Renews this process's leases; `lost(job_id)` says whether a held job stopped being ours."""

    def __init__(self, store: Store, owner: str, lease_s: float) -> None:
        self.store, self.owner, self.lease_s = store, owner, lease_s
        self._held: set[str] = set()
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def hold(self, job_id: str) -> None:
        with self._lock:
            self._held.add(job_id)
            self._lost.discard(job_id)

    def release(self, job_id: str) -> None:
        with self._lock:
            self._held.discard(job_id)
            self._lost.discard(job_id)

    def lost(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._lost

    def beat(self) -> None:
        """Renew now (also called by tests); jobs no longer ours are marked lost."""
        with self._lock:
            held = sorted(self._held - self._lost)
        kept = self.store.renew_leases(self.owner, held, self.lease_s)
        with self._lock:
            for job_id in held:
                if job_id not in kept and job_id in self._held:
                    self._lost.add(job_id)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.beat()
            except Exception as exc:  # the database is away for a moment: try again at the next beat
                log.warning("could not renew job leases: %s", exc)


def sweep(store: Store) -> list[dict]:
    """Queue again (or fail, past MAX_ATTEMPTS) the jobs whose leases ran out; returns them."""
    return store.recover(expired=True)
