"""GET /v1/models, POST /v1/models/{id}/activate: versions with lineage and metrics; switch without restart."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from landsentry.api.deps import get_holder, get_store, require_token
from landsentry.api.openapi import CHANGES, refusals
from landsentry.api.public import public_model
from landsentry.api.schemas import ModelList, ModelVersion
from landsentry.api.store import Store
from landsentry.api.versions import ModelHolder

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList)
def list_models(store: Store = Depends(get_store)) -> Any:
    """Every version, oldest first, with parent, data and metrics; `active` answers interpretations."""
    active = store.active_model_id()
    return {"models": [public_model(m, active) for m in store.list_models()], "active": active}


@router.post("/{model_id}/activate", dependencies=[Depends(require_token)], response_model=ModelVersion,
             responses=refusals(*CHANGES, 404, 422))
def activate(model_id: str, store: Store = Depends(get_store), holder: ModelHolder = Depends(get_holder)) -> Any:
    """Make a version the one that answers (also to roll back); loaded before it is switched on."""
    model = store.get_model(model_id)
    if model is None:
        raise HTTPException(404, f"no model version {model_id!r}")
    holder.ensure(model_id)  # load first: a broken file leaves the old version active
    store.set_active_model(model_id)
    return public_model(model, model_id)
