"""POST /v1/train: fine-tune the active model on the stored samples, as a background job (one at a time)."""
from __future__ import annotations

import shutil

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from landsentry.api.deps import get_store, require_token
from landsentry.api.routers.jobs import public_job
from landsentry.api.store import Store, new_id
from landsentry.api.train_job import DEFAULT_EPOCHS, DEFAULT_STEPS, crop_size, snapshot_samples

router = APIRouter(prefix="/v1", tags=["train"])


class TrainRequest(BaseModel):
    epochs: int = Field(DEFAULT_EPOCHS, ge=1, le=50, description="passes, each ending with a score on the held-out samples")
    steps_per_epoch: int = Field(DEFAULT_STEPS, ge=1, le=2000, description="optimiser steps (batches of 4 crops) per epoch")


@router.post("/train", dependencies=[Depends(require_token)], status_code=202, responses={409: {}, 422: {}})
def train(body: TrainRequest | None = Body(None), store: Store = Depends(get_store)) -> JSONResponse:
    """Queue a train job; 409 while another is queued or running, or when there are no samples."""
    body = body or TrainRequest()
    samples = store.list_samples()
    if not samples:
        raise HTTPException(409, "no samples stored yet: add labelled samples with POST /v1/samples first")
    parent = store.active_model_id()
    job_id = new_id("j")
    job_dir = store.job_dir(job_id)
    train_ids, val_ids = snapshot_samples(store, job_dir, samples)
    params = {"epochs": body.epochs, "steps_per_epoch": body.steps_per_epoch, "parent": parent,
              "train": train_ids, "val": val_ids, "crop_size": crop_size(samples), "replay": None}
    job = store.create_train_job(job_id, params)
    if job is None:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise HTTPException(409, "a train job is already queued or running; wait for it (GET /v1/jobs)")
    return JSONResponse(public_job(store, job), status_code=202)
