"""GET /v1/health and GET /v1/classes."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from landsentry.models.analysis.change import CHANGE_CODES, CODE_COLOURS
from landsentry.models.vocabulary.classes import CLASS_ID, CLASSES, IGNORE_INDEX
from landsentry.models.analysis.flags import BASE_KINDS

from landsentry.api.deps import get_holder, get_store
from landsentry.api.public import public_model
from landsentry.api.schemas import Classes, Health
from landsentry.api.store import Store
from landsentry.api.versions import ModelHolder

router = APIRouter(prefix="/v1", tags=["service"])
KIND_CLASS = {"building": "building", "road": "road", "earthwork": "bare_soil"}


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
    kind_colors = {kind: list(CLASSES[CLASS_ID[name]].color) for kind, name in KIND_CLASS.items()}
    kind_colors.update({kind: list(CODE_COLOURS[code]) for code, kind in CHANGE_CODES.items()})
    return {"classes": [{"id": c.id, "name": c.name, "title": c.title, "color": list(c.color)} for c in CLASSES],
            "ignore_index": IGNORE_INDEX, "kinds": list(BASE_KINDS), "kind_colors": kind_colors}
