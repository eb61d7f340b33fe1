"""The progress channel of `landsentry train --progress-file FILE`: one JSON object per line, appended.

The service's train jobs read the last line for progress and for the reason a run failed, instead of
parsing what the terminal shows. Lines (the main process writes them; nothing else is in the file):

    {"event": "step",  "epoch": 1, "epochs": 2, "step": 5, "steps": 20, "loss": 0.93, "samples_per_s": 6.1, "elapsed_s": 6.6}
    {"event": "epoch", "epoch": 1, "epochs": 2, "step": 20, "steps": 20, "loss": 0.88, "samples_per_s": 6.0, "miou": 0.41}
    {"event": "error", "message": "no training data ...", "user_error": true}

A step line every `steps // STEP_LINES` steps (each step when there are fewer), an epoch line at the
end of each epoch (after its validation), an error line before the command exits non-zero.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from landsentry.models.vocabulary.errors import LandsentryError

STEP_LINES = 20  # about this many step lines per epoch
OnStep = Callable[[int, float, float], None]  # (step, mean loss so far, samples/s)


class ProgressLog:
    """Appends progress lines to `path`; with no path (another rank, or not asked for) it does nothing."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def _write(self, record: dict) -> None:
        if self.path is not None:
            with self.path.open("a") as fh:  # one write per line: a reader never sees half a record
                fh.write(json.dumps(record) + "\n")

    def stepper(self, epoch: int, epochs: int, steps: int) -> OnStep:
        """The `on_step(step, mean_loss, samples_per_s)` callback for one epoch."""
        every = max(1, steps // STEP_LINES)
        started = time.perf_counter()

        def on_step(step: int, loss: float, samples_per_s: float) -> None:
            if step % every == 0 and step < steps:  # the last step is reported by the epoch line
                self._write({"event": "step", "epoch": epoch, "epochs": epochs, "step": step, "steps": steps,
                             "loss": round(loss, 4), "samples_per_s": round(samples_per_s, 2),
                             "elapsed_s": round(time.perf_counter() - started, 3)})

        return on_step

    def epoch(self, epoch: int, epochs: int, steps: int, loss: float, samples_per_s: float, miou: float | None) -> None:
        self._write({"event": "epoch", "epoch": epoch, "epochs": epochs, "step": steps, "steps": steps,
                     "loss": round(loss, 4), "samples_per_s": round(samples_per_s, 2), "miou": miou})

    def error(self, exc: BaseException) -> None:
        """The reason the run stops: the message alone for a user error, with the exception's type for a bug."""
        user = isinstance(exc, LandsentryError)
        self._write({"event": "error", "message": str(exc) if user else f"{type(exc).__name__}: {exc}", "user_error": user})


NO_PROGRESS = ProgressLog(None)
