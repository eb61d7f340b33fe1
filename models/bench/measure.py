"""Seconds per stage and memory high-water marks, for `landsentry bench`.

`Clock` is a `models.inference.timing.Timer`: the interpretation path reports its stages to it, so
the bench measures the real path without wrapping or patching any production function.
"""
from __future__ import annotations

import resource
from pathlib import Path

from landsentry.models.inference.timing import Timer


class Clock(Timer):
    """Seconds per stage, summed over calls; `peaks` holds the RSS high-water mark seen when a stage ended."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peaks: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        if stage == "rasters":  # the streamed part: its memory should not grow with the scene's height
            self.peaks[stage] = peak_rss_mib()


def reset_peak_rss() -> bool:
    """Restart the kernel's RSS high-water mark (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """High-water mark of resident memory since the last reset (or process start), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_table(clock: Clock, total: float, load: float) -> dict[str, float]:
    """Exclusive seconds per stage, adding up to the load + run time."""
    s = clock.seconds
    read, model, change = s.get("read", 0.0), s.get("model", 0.0), s.get("change_model", 0.0)
    tiles, rasters = s.get("tiles", 0.0), s.get("rasters", 0.0)
    stages = {
        "load_model": load,
        "read_preprocess": read,
        "model": model,
        "change_model": change,
        "stitch": max(0.0, tiles - read - model - change),
        "write_rasters": max(0.0, rasters - tiles),
        "polygonize": s.get("polygonize", 0.0),
        "write_vectors": s.get("vectors", 0.0),
        "overlay": s.get("overlay", 0.0),
    }
    stages["other"] = max(0.0, total - sum(v for k, v in stages.items() if k != "load_model"))
    if not change:
        del stages["change_model"]
    return {k: round(v, 3) for k, v in stages.items()}
