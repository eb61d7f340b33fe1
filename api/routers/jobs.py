"""GET /v1/jobs, GET /v1/jobs/{id}, GET /v1/jobs/{id}/files/{name}."""
from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from landsentry.api.deps import get_store
from landsentry.api.inference import public_result
from landsentry.api.store import Store
from landsentry.api.versions import public_model

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MEDIA = {".png": "image/png", ".tif": "image/tiff", ".geojson": "application/geo+json", ".csv": "text/csv", ".json": "application/json"}


def public_job(store: Store, job: dict, with_flags: bool = True) -> dict:
    """A job record as the API shows it."""
    result = job["result"]
    if job["type"] == "interpret":
        result = public_result(job["id"], result, store.job_dir(job["id"]), job["kind"], with_flags)
    elif result and result.get("model"):  # a train job: the version as it is now (active or not)
        model = store.get_model(result["model"]["id"])
        result = {**result, "model": public_model(model, store.active_model_id()) if model else result["model"]}
    return {"id": job["id"], "type": job["type"], "kind": job["kind"], "status": job["status"], "progress": job["progress"],
            "message": job["message"], "error": job["error"], "created": job["created"], "updated": job["updated"], "result": result}


def job_or_404(store: Store, job_id: str) -> dict:
    job = store.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job


@router.get("")
def list_jobs(store: Store = Depends(get_store)) -> dict:
    """Jobs, newest first (results without the flags GeoJSON; fetch a job by id for those)."""
    return {"jobs": [public_job(store, j, with_flags=False) for j in store.list_jobs()]}


@router.get("/{job_id}")
def get_job(job_id: str, store: Store = Depends(get_store)) -> dict:
    """A job's status, progress and, when done, its result with download links."""
    return public_job(store, job_or_404(store, job_id))


@router.get("/{job_id}/files/{name}")
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
    return FileResponse(path, media_type=MEDIA.get(suffix, "application/octet-stream"), filename=name)
