"""Cancelling a running job: the thread that runs it looks at the job's record every half second and stops.

`POST /v1/jobs/{id}/cancel` only marks the record `cancelled` (api/store.py). An interpretation
notices through the hooks it already calls - its progress callback after each batch of windows and
its timer at each stage - and `JobCancelled` unwinds it: the pipeline's hidden work folder and the
job's `.out-*` folder are removed on the way out, and the job's other files by the caller. A train
job's child process is terminated by the same check (api/train_job.py). The same checks stop a job
whose lease this process lost (api/heartbeat.py): `LeaseLost`, and its files are left to the replica
that took it over.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

from landsentry.models.inference.runner import ProgressFn
from landsentry.models.inference.timing import Timer

from landsentry.api.heartbeat import Heartbeat
from landsentry.api.store import Store

CHECK_EVERY_S = 0.5


class JobCancelled(Exception):
    """The job was cancelled while it ran."""


class LeaseLost(JobCancelled):
    """The job stopped being this process's (its lease ran out and another worker took it): stop, touch nothing."""


class CancelWatch(Timer):
    """A timer (and a progress callback) that raises JobCancelled in the job's thread once it is cancelled."""

    def __init__(self, store: Store, job_id: str, progress: ProgressFn | None = None, heartbeat: Heartbeat | None = None) -> None:
        self.store, self.job_id, self._progress, self.heartbeat = store, job_id, progress, heartbeat
        self._last = 0.0

    def lease_lost(self) -> bool:
        """Whether the job stopped being ours other than by a cancel (the heartbeat says; no query)."""
        return self.heartbeat is not None and self.heartbeat.lost(self.job_id) and not self.store.is_cancelled(self.job_id)

    def cancelled(self) -> bool:
        """Whether the job was cancelled or lost (asks the store at most every CHECK_EVERY_S)."""
        if self.heartbeat is not None and self.heartbeat.lost(self.job_id):
            return True
        if time.monotonic() - self._last < CHECK_EVERY_S:
            return False
        self._last = time.monotonic()
        return self.store.is_cancelled(self.job_id)

    def check(self) -> None:
        if self.cancelled():
            raise LeaseLost(self.job_id) if self.lease_lost() else JobCancelled(self.job_id)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.check()
        with super().stage(name):
            yield

    def progress(self, done: int, total: int) -> None:
        """The job's progress callback: reports on, after checking for a cancel."""
        self.check()
        if self._progress is not None:
            self._progress(done, total)
