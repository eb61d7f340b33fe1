"""What a train job knows of its `landsentry train` child: the last line of its progress file.

training/progress.py writes one JSON object per line (step, epoch and error events); this side only
reads, so the service never parses what the training command prints for people.
"""
from __future__ import annotations

import json
from pathlib import Path

TAIL_BYTES = 8192  # a few dozen lines: plenty to find the last complete one


def last_event(path: Path) -> dict | None:
    """The file's last complete JSON line (one being written is skipped); None before the first."""
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - TAIL_BYTES))
        lines = fh.read().decode("utf-8", "replace").splitlines()
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            return event
    return None


def progress_of(event: dict | None) -> tuple[float, str] | None:
    """(0..1 of the training run, message) from a step or epoch event; None for anything else."""
    if event is None or event.get("event") not in ("step", "epoch"):
        return None
    epoch, epochs = int(event["epoch"]), max(1, int(event["epochs"]))
    step, steps = int(event["step"]), max(1, int(event["steps"]))
    fraction = min(1.0, (epoch - 1 + step / steps) / epochs)
    if event["event"] == "epoch":
        miou = event.get("miou")
        scored = f", held-out mIoU {miou:.3f}" if isinstance(miou, (int, float)) else ""
        return fraction, f"epoch {epoch}/{epochs} done, loss {event['loss']:.3f}{scored}"
    return fraction, f"epoch {epoch}/{epochs}, step {step}/{steps}, loss {event['loss']:.3f}"


def failure_reason(event: dict | None) -> str:
    """The reason the training command reported before it stopped, if it did."""
    if event is not None and event.get("event") == "error":
        return str(event.get("message") or "no message")[:500]
    return "it reported no reason (its output is in run/train.out in the job's folder)"
