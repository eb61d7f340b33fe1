"""POST /v1/train: fine-tune the active model on the stored samples, as a background job (one at a time)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException

from landsentry.models.vocabulary.errors import InputError

from landsentry.api.deps import get_settings, get_store, require_token
from landsentry.api.openapi import CHANGES, refusals
from landsentry.api.public import public_job
from landsentry.api.schemas import TrainJob, TrainRequest
from landsentry.api.settings import Settings
from landsentry.api.retrain import queue_train_job
from landsentry.api.store import Store

router = APIRouter(prefix="/v1", tags=["train"])


@router.post("/train", dependencies=[Depends(require_token)], status_code=202, response_model=TrainJob,
             responses={202: {"description": "queued: poll GET /v1/jobs/{id}"}, **refusals(*CHANGES, 409, 422)})
def train(body: TrainRequest | None = Body(None), store: Store = Depends(get_store), settings: Settings = Depends(get_settings)) -> Any:
    """Queue a train job; 409 while another is queued or running, or when there are no samples; 422 over the
    server's caps on epochs and steps."""
    body = body or TrainRequest()
    for field, value, cap, variable in (("epochs", body.epochs, settings.max_train_epochs, "LANDSENTRY_MAX_TRAIN_EPOCHS"),
                                        ("steps_per_epoch", body.steps_per_epoch, settings.max_train_steps, "LANDSENTRY_MAX_TRAIN_STEPS")):
        if value > cap:
            raise InputError(f"{field}: {value} is over this server's cap of {cap} ({variable})")
    try:
        job = queue_train_job(store, body.epochs, body.steps_per_epoch, body.activate or settings.train_activate)
    except LookupError as exc:
        raise HTTPException(409, str(exc)) from None
    if job is None:
        raise HTTPException(409, "a train job is already queued or running; wait for it (GET /v1/jobs)")
    return public_job(store, job)
