"""How many cores this process may really use, so model threads never oversubscribe them.

The CPU affinity mask covers SLURM allocations (cpusets) and `taskset`; a container's CPU limit
(Kubernetes `resources.limits.cpu`) is a CFS quota that the mask does not show, so it is read from
the cgroup too (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _quota(text_quota: str, text_period: str) -> int | None:
    try:
        quota, period = float(text_quota), float(text_period)
    except ValueError:  # "max": no limit
        return None
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def cgroup_cpu_limit(root: Path = CGROUP) -> int | None:
    """Whole cores the cgroup's CPU quota allows, or None when there is no quota (or no cgroup to read)."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return _quota(quota, period)
        v1 = root / "cpu"
        if (v1 / "cpu.cfs_quota_us").is_file():
            return _quota((v1 / "cpu.cfs_quota_us").read_text().strip(), (v1 / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError):
        return None
    return None


def usable_cores() -> int:
    """The cores of the affinity mask, capped by the container's CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit else cores)
