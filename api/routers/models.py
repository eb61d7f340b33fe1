"""GET /v1/models, POST /v1/models/{id}/activate: versions with lineage and metrics; switch without restart."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from landsentry.api.deps import get_holder, get_store, require_token
from landsentry.api.store import Store
from landsentry.api.versions import ModelHolder, public_model

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
def list_models(store: Store = Depends(get_store)) -> dict:
    active = store.active_model_id()
    return {"models": [public_model(m, active) for m in store.list_models()], "active": active}


@router.post("/{model_id}/activate", dependencies=[Depends(require_token)], responses={404: {}})
def activate(model_id: str, store: Store = Depends(get_store), holder: ModelHolder = Depends(get_holder)) -> dict:
    """Make a version the one that answers (also to roll back); loaded before it is switched on."""
    model = store.get_model(model_id)
    if model is None:
        raise HTTPException(404, f"no model version {model_id!r}")
    holder.ensure(model_id)  # load first: a broken file leaves the old version active
    store.set_active_model(model_id)
    return public_model(model, model_id)
