"""POST /v1/interpret: one image or a before/after pair (and permits); small inputs inline, large ones as a job.

Requests waiting for an inference slot wait on an async limiter, not in a thread, so a burst of
uploads never starves the thread pool that health checks and job polling use. Each job's images
together must stay within LANDSENTRY_MAX_JOB_PIXELS; queued jobs carry their pixel count, so the
worker's small-job lane can take them past a large one (api/worker.py).
"""
from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from landsentry.models.vocabulary.errors import InputError, LandsentryError, TooLargeError

from landsentry.api.cancel import CancelWatch, JobCancelled, LeaseLost
from landsentry.api.deps import get_holder, get_settings, get_store, require_token
from landsentry.api.flag_register import flag_records
from landsentry.api.heartbeat import Heartbeat
from landsentry.api.inference import check_inputs, probe_size, run_interpretation
from landsentry.api.openapi import CHANGES, refusals
from landsentry.api.public import public_job
from landsentry.api.schemas import InterpretJob
from landsentry.api.settings import Settings
from landsentry.api.store import Store, new_id
from landsentry.api.uploads import display_name, present, save_file, save_image
from landsentry.api.versions import ModelHolder

router = APIRouter(prefix="/v1", tags=["interpret"])


def parse_bands(text: str | None) -> list[int] | None:
    """The `bands` form field ("4,3,2") as 1-based band numbers."""
    if not text or not text.strip():
        return None
    try:
        bands = [int(b) for b in text.split(",")]
    except ValueError:
        raise InputError(f"bands: comma-separated band numbers like 4,3,2, not {text[:40]!r}") from None
    if not 1 <= len(bands) <= 4 or min(bands) < 1:
        raise InputError(f"bands: 1 to 4 band numbers from 1 up, like 4,3,2, not {text[:40]!r}")
    return bands


def store_inputs(job_dir: Path, uploads: dict[str, UploadFile], params: dict, settings: Settings, channels: int) -> tuple[int, int]:
    """Save and check the uploads (4xx for bad ones); returns the pixels of the largest image (what the inline
    limit is about) and of all images together (the job's work: its budget and its worker lane)."""
    inputs, names = job_dir / "input", params["names"]
    paths = [save_image(uploads[role], inputs, role, names[role]) for role in ("after", "before") if role in uploads]
    if "permits" in uploads:
        save_file(uploads["permits"], inputs / "permits.geojson")
    sizes = [probe_size(p, settings.max_upload_pixels, "LANDSENTRY_MAX_UPLOAD_PIXELS", names[p.stem]) for p in paths]
    pixels = sum(w * h for w, h in sizes)
    if pixels > settings.max_job_pixels:
        raise TooLargeError(f"the images of this request hold {pixels:,} pixels together, over the limit of "
                            f"{settings.max_job_pixels:,} per job (set LANDSENTRY_MAX_JOB_PIXELS to raise it, or tile the images)")
    check_inputs(job_dir, channels, params)  # bad input: 4xx now, not a failed job later
    return max(w * h for w, h in sizes), pixels


def run_inline(store: Store, holder: ModelHolder, settings: Settings, beat: Heartbeat, job_id: str, params: dict) -> dict:
    """Interpret now, in this thread, under this server's lease; a cancel (POST /v1/jobs/ID/cancel) stops it and
    answers the cancelled job. Its flags enter the register with its completion."""
    loaded = holder.current()
    watch = CancelWatch(store, job_id, heartbeat=beat)
    try:
        job_dir = store.job_dir(job_id)
        result = run_interpretation(job_dir, loaded.predictor, holder.change_runner(), params,
                                    settings.preview_max_pixels, watch.progress, watch)
        result["model"] = loaded.model["id"]
        if not store.finish_job(job_id, result, holder=beat.owner, flags=flag_records(job_dir, result)):
            raise JobCancelled(job_id) if store.is_cancelled(job_id) else LeaseLost(job_id)
    except LeaseLost:
        pass  # this server stalled past its lease and a worker took the job over: answer the job as it stands
    except JobCancelled:
        store.discard_files(job_id)
    finally:
        beat.release(job_id)
    return public_job(store, store.get_job(job_id))  # type: ignore[arg-type]


@router.post("/interpret", dependencies=[Depends(require_token)], status_code=200, response_model=InterpretJob,
             responses={200: {"description": "interpreted now: the finished job, flags inline (or the job cancelled meanwhile)"},
                        202: {"model": InterpretJob, "description": "queued as a job (over LANDSENTRY_INLINE_MAX_PIXELS): poll GET /v1/jobs/{id}"},
                        **refusals(*CHANGES, 415, 422)})
async def interpret_upload(
    request: Request,
    response: Response,
    image: UploadFile = File(..., description="the image, or the AFTER image of a pair (PNG, JPEG, GeoTIFF)"),
    before: UploadFile = File(None, description="the BEFORE image of a pair"),
    permits: UploadFile = File(None, description="GeoJSON of permitted parcels"),
    wgs84: bool = Form(False, description="also write flags in EPSG:4326"),
    bands: str = Form(None, description="1-based band numbers to read, comma-separated (e.g. 4,3,2): for images "
                                        "with other than 1, 3 or 4 bands, or another band order"),
    settings: Settings = Depends(get_settings),
    store: Store = Depends(get_store),
    holder: ModelHolder = Depends(get_holder),
) -> Any:
    """Interpret an upload. 200 with the finished job when small, 202 with a queued job when large."""
    job_id = new_id("j")
    job_dir = store.job_dir(job_id)
    uploads = {"after": image, **{role: f for role, f in (("before", before), ("permits", permits)) if present(f)}}
    kind = "pair" if "before" in uploads else "single"
    names = {role: display_name(upload, field) for (role, upload), field in zip(uploads.items(), ("image", "before", "permits"))}
    try:
        params = {"wgs84": wgs84, "bands": parse_bands(bands), "names": names}
        channels = holder.current().predictor.checkpoint.in_channels
        largest, params["pixels"] = await run_in_threadpool(store_inputs, job_dir, uploads, params, settings, channels)
        if largest > settings.inline_max_pixels:
            job = store.create_job(job_id, "interpret", params, kind=kind, message=f"queued: {largest:,} pixels, over the inline limit")
            response.status_code = 202
            return public_job(store, job)
        beat = request.app.state.heartbeat
        store.create_job(job_id, "interpret", params, status="running", kind=kind, message="interpreting", owner=beat.owner,
                         lease_s=settings.lease_s)
        beat.hold(job_id)
        return await anyio.to_thread.run_sync(partial(run_inline, store, holder, settings, beat, job_id, params),
                                              limiter=request.app.state.inference_slots)
    except LandsentryError:
        await run_in_threadpool(store.delete_job, job_id)  # refused input leaves nothing behind
        raise
    except BaseException as exc:
        if store.get_job(job_id) is None:
            shutil.rmtree(job_dir, ignore_errors=True)
        else:
            store.fail_job(job_id, f"internal error: {type(exc).__name__}", request.app.state.heartbeat.owner)
        raise
