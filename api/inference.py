"""Interpret jobs: the same `models` functions as `landsentry predict`, plus the files the page needs.

Used by the server (small inputs, inline) and by the worker (large inputs). Inputs live in
`JOB/input/{after,before}.<format>` and `JOB/input/permits.geojson` (names chosen here, never the
uploader's); results are written to a hidden folder and renamed to `JOB/out` only when complete,
so a job interrupted by a crash simply runs again.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from landsentry.models.analysis.interpret import Inputs, interpret, open_inputs
from landsentry.models.inference.runner import ChangeRunner, Predictor, ProgressFn
from landsentry.models.io.header import probe
from landsentry.models.vocabulary.errors import InputError

FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GTiff": ".tif"}


def input_path(job_dir: Path, role: str) -> Path | None:
    """The stored input for a role (after, before, permits), whatever its format suffix."""
    found = sorted((job_dir / "input").glob(f"{role}.*"))
    return found[0] if found else None


def probe_size(path: Path, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header only; refuses unknown formats (415) and oversized images (413)."""
    header = probe(path).check_limit(max_pixels)
    return header.width, header.height


def job_inputs(job_dir: Path, channels: int) -> Inputs:
    """The job's stored inputs, opened (and aligned, permits loaded) the way the interpretation reads them."""
    after, before, permits = (input_path(job_dir, r) for r in ("after", "before", "permits"))
    if after is None:
        raise InputError("the job has no input image (its files are gone)")
    return open_inputs(after, before, permits, channels=channels)


def check_inputs(job_dir: Path, channels: int) -> None:
    """Open everything a queued job will read, so bad input is refused now (4xx) and not in the worker."""
    with job_inputs(job_dir, channels):
        pass


def run_interpretation(job_dir: Path, predictor: Predictor, change_runner: ChangeRunner | None, wgs84: bool,
                       preview_max_pixels: int, progress: ProgressFn | None = None) -> dict:
    """Interpret the job's inputs into JOB/out and return the job's result (without the flags, read from disk)."""
    out = job_dir / "out"
    work = Path(tempfile.mkdtemp(prefix=".out-", dir=job_dir))
    try:
        with job_inputs(job_dir, predictor.checkpoint.in_channels) as inputs:
            result = interpret(inputs, work, predictor, change_runner, wgs84=wgs84, progress=progress,
                               previews_max_pixels=preview_max_pixels)
        if out.exists():  # a half-finished earlier attempt never renamed its folder; an old finished one is replaced
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = result.info
    return {
        "summary": result.summary,
        "grid": {"width": info.width, "height": info.height, "transform": list(info.transform)[:6],
                 "crs": info.crs.to_string() if info.crs else None},
        "file_names": sorted(p.name for p in out.iterdir()),
    }
