"""GET /v1/health and GET /v1/classes."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from landsentry.models.vocabulary.classes import CLASSES, IGNORE_INDEX
from landsentry.models.vocabulary.kinds import KIND_NAMES, kind_colours

from landsentry.api.deps import get_holder, get_store
from landsentry.api.public import public_model
from landsentry.api.schemas import Classes, Health
from landsentry.api.store import Store
from landsentry.api.versions import ModelHolder

router = APIRouter(prefix="/v1", tags=["service"])


@router.get("/health", response_model=Health)
def health(request: Request, store: Store = Depends(get_store), holder: ModelHolder = Depends(get_holder)) -> Any:
    """Whether the service is up, which model answers, and where jobs stand."""
    loaded = holder.current()
    worker = request.app.state.worker
    return {"status": "ok", "model": public_model(loaded.model, store.active_model_id()), "device": str(loaded.predictor.device),
            "backend": loaded.predictor.backend, "worker": "running" if worker is not None and worker.poll() is None else "stopped",
            "jobs": store.count_jobs()}


@router.get("/classes", response_model=Classes)
def classes() -> Any:
    """The class schema (ids, names, colours) and the flag kinds with their colours."""
    return {"classes": [{"id": c.id, "name": c.name, "title": c.title, "color": list(c.color)} for c in CLASSES],
            "ignore_index": IGNORE_INDEX, "kinds": list(KIND_NAMES), "kind_colors": kind_colours()}
