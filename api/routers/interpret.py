"""POST /v1/interpret: one image or a before/after pair (and permits); small inputs inline, large ones as a job.

Requests waiting for an inference slot wait on an async limiter, not in a thread, so a burst of
uploads never starves the thread pool that health checks and job polling use.
"""
from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from landsentry.models.vocabulary.errors import LandsentryError

from landsentry.api.deps import get_holder, get_settings, get_store, require_token
from landsentry.api.inference import check_inputs, probe_size, run_interpretation
from landsentry.api.openapi import CHANGES, refusals
from landsentry.api.public import public_job
from landsentry.api.schemas import InterpretJob
from landsentry.api.settings import Settings
from landsentry.api.store import Store, new_id
from landsentry.api.uploads import present, save_file, save_image
from landsentry.api.versions import ModelHolder

router = APIRouter(prefix="/v1", tags=["interpret"])


def store_inputs(job_dir: Path, image: UploadFile, before: UploadFile | None, permits: UploadFile | None,
                 settings: Settings, channels: int) -> int:
    """Save and check the uploads (4xx for bad ones); returns the largest image's pixel count."""
    inputs = job_dir / "input"
    paths = [save_image(image, inputs, "after", label="image")]
    if before is not None:
        paths.append(save_image(before, inputs, "before"))
    if permits is not None:
        save_file(permits, inputs / "permits.geojson")
    pixels = max(w * h for w, h in (probe_size(p, settings.max_upload_pixels) for p in paths))
    check_inputs(job_dir, channels)  # bad input: 4xx now, not a failed job later
    return pixels


def run_inline(store: Store, holder: ModelHolder, settings: Settings, job_id: str, wgs84: bool) -> dict:
    loaded = holder.current()
    result = run_interpretation(store.job_dir(job_id), loaded.predictor, holder.change_runner(), wgs84, settings.preview_max_pixels)
    result["model"] = loaded.model["id"]
    store.finish_job(job_id, result)
    return public_job(store, store.get_job(job_id))  # type: ignore[arg-type]


@router.post("/interpret", dependencies=[Depends(require_token)], status_code=200, response_model=InterpretJob,
             responses={200: {"description": "interpreted now: the finished job, flags inline"},
                        202: {"model": InterpretJob, "description": "queued as a job (over LANDSENTRY_INLINE_MAX_PIXELS): poll GET /v1/jobs/{id}"},
                        **refusals(*CHANGES, 415, 422)})
async def interpret_upload(
    request: Request,
    response: Response,
    image: UploadFile = File(..., description="the image, or the AFTER image of a pair (PNG, JPEG, GeoTIFF)"),
    before: UploadFile | None = File(None, description="the BEFORE image of a pair"),
    permits: UploadFile | None = File(None, description="GeoJSON of permitted parcels"),
    wgs84: bool = Form(False, description="also write flags in EPSG:4326"),
    settings: Settings = Depends(get_settings),
    store: Store = Depends(get_store),
    holder: ModelHolder = Depends(get_holder),
) -> Any:
    """Interpret an upload. 200 with the finished job when small, 202 with a queued job when large."""
    job_id = new_id("j")
    job_dir = store.job_dir(job_id)
    kind = "pair" if present(before) else "single"
    try:
        channels = holder.current().predictor.checkpoint.in_channels
        pixels = await run_in_threadpool(store_inputs, job_dir, image, before if present(before) else None,
                                         permits if present(permits) else None, settings, channels)
        params = {"wgs84": wgs84}
        if pixels > settings.inline_max_pixels:
            job = store.create_job(job_id, "interpret", params, kind=kind, message=f"queued: {pixels:,} pixels, over the inline limit")
            response.status_code = 202
            return public_job(store, job)
        store.create_job(job_id, "interpret", params, status="running", kind=kind, message="interpreting", owner="server")
        record = await anyio.to_thread.run_sync(partial(run_inline, store, holder, settings, job_id, wgs84),
                                                limiter=request.app.state.inference_slots)
        return record
    except LandsentryError:
        await run_in_threadpool(store.delete_job, job_id)  # refused input leaves nothing behind
        raise
    except BaseException as exc:
        if store.get_job(job_id) is None:
            shutil.rmtree(job_dir, ignore_errors=True)
        else:
            store.fail_job(job_id, f"internal error: {type(exc).__name__}")
        raise
