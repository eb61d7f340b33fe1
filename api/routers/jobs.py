"""GET /v1/jobs, GET /v1/jobs/{id}, GET /v1/jobs/{id}/files/{name}, GET /v1/jobs/{id}/segments, POST /v1/jobs/{id}/cancel."""
from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse

from landsentry.api.deps import get_store, require_token
from landsentry.api.openapi import CHANGES, download, refusals
from landsentry.api.public import public_job
from landsentry.api.schemas import Job, JobList
from landsentry.api.segments import SEGMENT_PIXELS, segments_png
from landsentry.api.store import Store

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MEDIA = {".png": "image/png", ".tif": "image/tiff", ".geojson": "application/geo+json", ".csv": "text/csv", ".json": "application/json"}
OTHER_MEDIA = "application/octet-stream"


def job_or_404(store: Store, job_id: str) -> dict:
    job = store.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job


@router.get("", response_model=JobList)
def list_jobs(store: Store = Depends(get_store)) -> Any:
    """Jobs, newest first (results without the flags GeoJSON; fetch a job by id for those)."""
    return {"jobs": [public_job(store, j, with_flags=False) for j in store.list_jobs()]}


@router.get("/{job_id}", response_model=Job, responses=refusals(404, 422))
def get_job(job_id: str, store: Store = Depends(get_store)) -> Any:
    """A job's status, progress and, when done, its result with download links."""
    return public_job(store, job_or_404(store, job_id))


@router.get("/{job_id}/files/{name}", response_class=FileResponse,
            responses={**download([*MEDIA.values(), OTHER_MEDIA], "the file, typed by its suffix"), **refusals(404, 422)})
def get_file(job_id: str, name: str, store: Store = Depends(get_store)) -> FileResponse:
    """One result file; only names the job's own result lists are served."""
    job = job_or_404(store, job_id)
    names = (job["result"] or {}).get("file_names") or []
    if not SAFE_NAME.match(name) or name not in names:
        raise HTTPException(404, f"job {job_id} has no file {name!r}")
    path = store.job_dir(job_id) / "out" / name
    if not path.is_file():
        raise HTTPException(404, f"job {job_id} has no file {name!r}")
    suffix = path.suffix.lower()
    return FileResponse(path, media_type=MEDIA.get(suffix, OTHER_MEDIA), filename=name)


@router.get("/{job_id}/segments", response_class=FileResponse,
            responses={**download(["image/png"], "16-bit greyscale PNG of segment numbers, the size of after.png"),
                       **refusals(404, 409, 422)})
def get_segments(job_id: str, size: Literal["small", "medium", "large"] = Query(
        "medium", description=f"about {', '.join(f'{v} ({k})' for k, v in SEGMENT_PIXELS.items())} pixels per segment"),
        store: Store = Depends(get_store)) -> FileResponse:
    """SLIC superpixels of a finished interpretation's image (after.png), for one-click fills on the page;
    computed on first request, then kept with the job (409: the job has no after.png preview to segment)."""
    job = job_or_404(store, job_id)
    if job["type"] != "interpret" or job["status"] != "done":
        raise HTTPException(409, f"job {job_id} is not a finished interpretation (status {job['status']})")
    if "after.png" not in (job["result"] or {}).get("file_names", []):
        raise HTTPException(409, f"job {job_id} is too large to annotate in the page (no after.png preview)")
    return FileResponse(segments_png(store.job_dir(job_id), size), media_type="image/png", filename=f"segments-{size}.png")


@router.post("/{job_id}/cancel", dependencies=[Depends(require_token)], response_model=Job, responses=refusals(*CHANGES, 404, 409, 422))
def cancel_job(job_id: str, store: Store = Depends(get_store)) -> Any:
    """Cancel a queued or running job: a queued one never runs; a running interpretation or training stops
    within seconds and its files are removed. The job stays listed, with status `cancelled`.
    409 when it has already finished; cancelling a cancelled job again answers it as it is."""
    job = store.cancel_job(job_id) or job_or_404(store, job_id)
    if job["status"] in ("done", "failed"):
        raise HTTPException(409, f"job {job_id} has already {'finished' if job['status'] == 'done' else 'failed'}: nothing to cancel")
    return public_job(store, job)
