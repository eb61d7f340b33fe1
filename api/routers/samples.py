"""POST /v1/samples (image + index mask, image + labelled polygons, or a finished job's image + mask),
GET /v1/samples, DELETE /v1/samples/{id}."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Response, UploadFile

from landsentry.models.vocabulary.errors import InputError

from landsentry.api.errors import require_form
from landsentry.api.deps import get_holder, get_settings, get_store, require_token
from landsentry.api.masks import read_mask
from landsentry.api.openapi import CHANGES, refusals
from landsentry.api.public import public_sample
from landsentry.api.sample_files import check_image, parse_class_map, save_sample, vector_mask, vector_suffix
from landsentry.api.schemas import Sample, SampleList
from landsentry.api.settings import Settings
from landsentry.api.store import Store, new_id
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


@router.post("", dependencies=[Depends(require_token), Depends(require_form)], status_code=201, response_model=Sample,
             responses=refusals(*CHANGES, 404, 415, 422))
def add_sample(
    mask: UploadFile = File(None, description="index PNG: class ids 0-5, 255 = ignore, same size as the image; or give vectors"),
    image: UploadFile = File(None, description="the image (PNG, JPEG, GeoTIFF); or give job_id"),
    job_id: str = Form(None, min_length=1, description="reuse this finished interpret job's image"),
    vectors: UploadFile = File(None, description="labelled polygons (GeoJSON or GeoPackage) instead of a mask: reprojected "
                               "and rasterised onto the image (a GeoTIFF with a CRS); unlabelled pixels are unknown (ignored)"),
    class_field: str = Form(None, min_length=1, description="with vectors: the property holding each polygon's class"),
    class_map: str = Form(None, description='with vectors: JSON {"property value": "class name"} (class names, or "unknown"); '
                          "without it the property must hold class names"),
    layer: str = Form(None, min_length=1, description="with vectors: the layer of a file with several (GeoPackage)"),
    settings: Settings = Depends(get_settings),
    store: Store = Depends(get_store),
    holder: ModelHolder = Depends(get_holder),
) -> Any:
    """Store a labelled sample for retraining (404: no such job_id)."""
    if present(image) == bool(job_id):
        raise InputError("give either an image file or a job_id (exactly one of them)")
    if present(mask) == present(vectors):
        raise InputError("give either a mask PNG or vectors (labelled polygons), exactly one of them")
    if present(vectors) and job_id:
        raise InputError("vectors are placed by the image's CRS: upload the GeoTIFF itself as image, not a job_id")
    if not present(vectors) and (class_field or class_map or layer):
        raise InputError("class_field, class_map and layer go with vectors; a mask PNG holds class ids already")
    mapping = parse_class_map(class_map) if present(vectors) else None
    sample_id = new_id("s")
    with tempfile.TemporaryDirectory(prefix=".incoming-", dir=store.samples_dir) as tmp:
        work = Path(tmp)
        name = display_name(image, "image") if present(image) else "the job's image"
        source_path = job_image(store, job_id) if job_id else save_image(image, work, "image", name)
        channels = holder.current().predictor.checkpoint.in_channels
        width, height = check_image(source_path, settings.max_sample_pixels, "LANDSENTRY_MAX_SAMPLE_PIXELS", channels, name)
        if present(vectors):
            vectors_name = display_name(vectors, "vectors")
            raw = save_file(vectors, work / "vectors")
            path = raw.rename(raw.with_suffix(vector_suffix(raw)))
            ids = vector_mask(source_path, path, class_field, mapping, layer, vectors_name).ids
            source = f"vectors:{vectors_name}"
        else:
            ids = read_mask(save_file(mask, work / "mask.png"), width, height)
            source = f"job:{job_id}" if job_id else "upload"
        sample = save_sample(store, sample_id, source_path, ids, source)
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
