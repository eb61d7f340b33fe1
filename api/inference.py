"""Interpret jobs: the same `models` functions as `landsentry predict`, plus the files the page needs.

Used by the server (small inputs, inline) and by the worker (large inputs). Inputs live in
`JOB/input/{after,before}.<format>` and `JOB/input/permits.geojson` (names chosen here, never the
uploader's); results are written to a hidden folder and renamed to `JOB/out` only when complete,
so a job interrupted by a crash simply runs again (the killed attempt's `.out-*` folder is removed
first). The job's params hold what else the files need: the uploaded names (for messages only) and
the bands to read.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from landsentry.models.analysis.interpret import Inputs, interpret, open_inputs
from landsentry.models.inference.runner import ChangeRunner, Predictor, ProgressFn
from landsentry.models.inference.timing import NO_TIMER, Timer
from landsentry.models.io.header import probe
from landsentry.models.vocabulary.errors import InputError

FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GTiff": ".tif"}
BANDS_FIELD = "the form field 'bands'"
"""How messages tell an API user to pick bands (the CLI says --bands)."""


def input_path(job_dir: Path, role: str) -> Path | None:
    """The stored input for a role (after, before, permits), whatever its format suffix."""
    found = sorted((job_dir / "input").glob(f"{role}.*"))
    return found[0] if found else None


def probe_size(path: Path, max_pixels: int, setting: str, name: str | None = None) -> tuple[int, int]:
    """(width, height) from the header only; refuses unknown formats (415) and images over `max_pixels`
    (413, naming the variable `setting` that sets it, and the file as `name`)."""
    header = probe(path, name).check_limit(max_pixels, setting, name)
    return header.width, header.height


def job_inputs(job_dir: Path, channels: int, params: dict | None = None) -> Inputs:
    """The job's stored inputs, opened (and aligned, permits loaded) the way the interpretation reads them;
    `params`: the job's, with the uploaded names (for messages) and the bands to read."""
    params = params or {}
    after, before, permits = (input_path(job_dir, r) for r in ("after", "before", "permits"))
    if after is None:
        raise InputError("the job has no input image (its files are gone)")
    return open_inputs(after, before, permits, channels=channels, bands=params.get("bands"), names=params.get("names"),
                       bands_option=BANDS_FIELD)


def check_inputs(job_dir: Path, channels: int, params: dict | None = None) -> None:
    """Open everything a queued job will read, so bad input is refused now (4xx) and not in the worker."""
    with job_inputs(job_dir, channels, params):
        pass


def run_interpretation(job_dir: Path, predictor: Predictor, change_runner: ChangeRunner | None, params: dict,
                       preview_max_pixels: int, progress: ProgressFn | None = None, timer: Timer = NO_TIMER) -> dict:
    """Interpret the job's inputs into JOB/out and return the job's result (without the flags, read from disk).
    `timer` receives the stages (api.cancel.CancelWatch stops a cancelled job there)."""
    out = job_dir / "out"
    for leftover in job_dir.glob(".out-*"):  # an earlier attempt killed mid-way
        shutil.rmtree(leftover, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=".out-", dir=job_dir))
    try:
        with job_inputs(job_dir, predictor.checkpoint.in_channels, params) as inputs:
            result = interpret(inputs, work, predictor, change_runner, wgs84=bool(params.get("wgs84")), progress=progress,
                               timer=timer, previews_max_pixels=preview_max_pixels)
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
