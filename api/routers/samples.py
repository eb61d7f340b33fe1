"""POST /v1/samples (image + index mask, or a finished job's image + mask), GET /v1/samples, DELETE /v1/samples/{id}."""
from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Response, UploadFile
from PIL import Image

from landsentry.models.vocabulary.errors import InputError
from landsentry.models.io.raster import RasterSource

from landsentry.api.deps import get_holder, get_settings, get_store, require_token
from landsentry.api.inference import probe_size
from landsentry.api.masks import class_pixels, read_mask
from landsentry.api.openapi import CHANGES, refusals
from landsentry.api.public import public_sample
from landsentry.api.schemas import Sample, SampleList
from landsentry.api.settings import Settings
from landsentry.api.store import Store, atomic_copy, atomic_write_bytes, new_id
from landsentry.api.uploads import display_name, present, save_file, save_image
from landsentry.api.versions import ModelHolder

router = APIRouter(prefix="/v1/samples", tags=["samples"])


def job_image(store: Store, job_id: str) -> Path:
    """The after image of a finished interpret job, on its analysis grid (what the page annotated)."""
    job = store.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    if job["type"] != "interpret" or job["status"] != "done":
        raise InputError(f"job {job_id} is not a finished interpretation (status {job['status']})")
    if "after.png" not in (job["result"] or {}).get("file_names", []):
        raise InputError(f"job {job_id} is too large to annotate (no after.png preview)")
    return store.job_dir(job_id) / "out" / "after.png"


@router.post("", dependencies=[Depends(require_token)], status_code=201, response_model=Sample,
             responses=refusals(*CHANGES, 404, 415, 422))
def add_sample(
    mask: UploadFile = File(..., description="index PNG: class ids 0-5, 255 = ignore, same size as the image"),
    image: UploadFile = File(None, description="the image (PNG, JPEG, GeoTIFF); or give job_id"),
    job_id: str = Form(None, min_length=1, description="reuse this finished interpret job's image"),
    settings: Settings = Depends(get_settings),
    store: Store = Depends(get_store),
    holder: ModelHolder = Depends(get_holder),
) -> Any:
    """Store a labelled sample for retraining (404: no such job_id)."""
    if present(image) == bool(job_id):
        raise InputError("give either an image file or a job_id (exactly one of them)")
    sample_id = new_id("s")
    with tempfile.TemporaryDirectory(prefix=".incoming-", dir=store.samples_dir) as tmp:
        work = Path(tmp)
        name = display_name(image, "image") if present(image) else "the job's image"
        source_path = job_image(store, job_id) if job_id else save_image(image, work, "image", name)
        width, height = probe_size(source_path, settings.max_sample_pixels, "LANDSENTRY_MAX_SAMPLE_PIXELS", name)
        with RasterSource(source_path, channels=holder.current().predictor.checkpoint.in_channels, name=name):
            pass  # decodes and checks it the way training will read it
        mask_path = save_file(mask, work / "mask.png")
        ids = read_mask(mask_path, width, height)
        buffer = io.BytesIO()
        Image.fromarray(ids, mode="L").save(buffer, format="PNG")
        atomic_write_bytes(store.samples_dir / "masks" / f"{sample_id}.png", buffer.getvalue())
        image_file = sample_id + source_path.suffix
        atomic_copy(source_path, store.samples_dir / "images" / image_file)
    sample = store.add_sample(sample_id, width, height, class_pixels(ids), f"job:{job_id}" if job_id else "upload", image_file)
    return public_sample(sample)


@router.get("", response_model=SampleList)
def list_samples(store: Store = Depends(get_store)) -> Any:
    """The stored samples, oldest first."""
    return {"samples": [public_sample(s) for s in store.list_samples()]}


@router.delete("/{sample_id}", dependencies=[Depends(require_token)], status_code=204, response_class=Response,
               responses=refusals(*CHANGES, 404, 422))
def delete_sample(sample_id: str, store: Store = Depends(get_store)) -> Response:
    """Remove a sample and its files (train jobs already queued keep their own copies)."""
    if not store.delete_sample(sample_id):
        raise HTTPException(404, f"no sample {sample_id!r}")
    return Response(status_code=204)
