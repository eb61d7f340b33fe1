"""Interpret jobs: the same `models` functions as `landsentry predict`, plus the files the page needs.

Used by the server (small inputs, inline) and by the worker (large inputs). Inputs live in
`JOB/input/{after,before}.<format>` and `JOB/input/permits.geojson` (names chosen here, never the
uploader's); results are written to a hidden folder and renamed to `JOB/out` only when complete,
so a job interrupted by a crash simply runs again.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

from landsentry.models.io.align import open_pair
from landsentry.models.nn.change_net import ChangeRunner
from landsentry.models.vocabulary.errors import InputError
from landsentry.models.analysis.one_date import interpret
from landsentry.models.io.permits import load_permits
from landsentry.models.inference.predictor import Predictor, ProgressFn
from landsentry.models.io.header import probe
from landsentry.models.io.raster import RasterSource

FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GTiff": ".tif"}


def input_path(job_dir: Path, role: str) -> Path | None:
    """The stored input for a role (after, before, permits), whatever its format suffix."""
    found = sorted((job_dir / "input").glob(f"{role}.*"))
    return found[0] if found else None


def probe_size(path: Path, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header only; refuses unknown formats (415) and oversized images (413)."""
    header = probe(path).check_limit(max_pixels)
    return header.width, header.height


def check_inputs(job_dir: Path, channels: int) -> None:
    """Open everything a queued job will read, so bad input is refused now (4xx) and not in the worker."""
    after, before, permits = (input_path(job_dir, r) for r in ("after", "before", "permits"))
    assert after is not None
    if before is not None:
        with open_pair(before, after, channels=channels) as pair:
            crs = pair.info.crs
    else:
        with RasterSource(after, channels=channels) as source:
            crs = source.info.crs
    if permits is not None:
        load_permits(permits, crs)


def run_interpretation(job_dir: Path, predictor: Predictor, change_runner: ChangeRunner | None, wgs84: bool,
                       preview_max_pixels: int, progress: ProgressFn | None = None) -> dict:
    """Interpret the job's inputs into JOB/out and return the job's result (without the flags, read from disk)."""
    after, before, permits = (input_path(job_dir, r) for r in ("after", "before", "permits"))
    if after is None:
        raise InputError("the job has no input image (its files are gone)")
    out = job_dir / "out"
    work = Path(tempfile.mkdtemp(prefix=".out-", dir=job_dir))
    try:
        pair = before is not None
        if pair:
            from landsentry.models.analysis.two_dates import interpret_pair

            result = interpret_pair(before, after, work, predictor, change_runner, permits=permits, wgs84=wgs84, progress=progress)
        else:
            result = interpret(after, work, predictor, wgs84=wgs84, progress=progress, permits=permits)
        info = result.info
        if info.width * info.height <= preview_max_pixels:
            write_previews(work, before, after, predictor.checkpoint.in_channels, "after_classes.tif" if pair else "classes.tif")
        if out.exists():  # a half-finished earlier attempt never renamed its folder; an old finished one is replaced
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names = sorted(p.name for p in out.iterdir())
    return {
        "summary": result.summary,
        "grid": {"width": info.width, "height": info.height, "transform": list(info.transform)[:6],
                 "crs": info.crs.to_string() if info.crs else None},
        "file_names": names,
    }


def write_previews(work: Path, before: Path | None, after: Path, channels: int, classes_name: str) -> None:
    """after.png (and before.png) at full resolution on the analysis grid, classes.png as one byte per pixel."""
    with rasterio.open(work / classes_name) as ds:
        classes = ds.read(1)
    shape = classes.shape
    if before is not None:
        with open_pair(before, after, channels=channels) as pair:
            Image.fromarray(pair.after.preview(shape)).save(work / "after.png", compress_level=1)
            Image.fromarray(pair.before.preview(shape)).save(work / "before.png", compress_level=1)
    else:
        with RasterSource(after, channels=channels) as source:
            Image.fromarray(source.preview(shape)).save(work / "after.png", compress_level=1)
    Image.fromarray(classes.astype(np.uint8), mode="L").save(work / "classes.png", compress_level=1)
