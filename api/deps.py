"""Dependencies the routers receive (settings, store, model holder, auth), taken from the app's state."""
from __future__ import annotations

import hmac

from fastapi import Depends, HTTPException, Request

from landsentry.api.settings import Settings
from landsentry.api.store import Store
from landsentry.api.versions import ModelHolder


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


def require_token(request: Request, settings: Settings = Depends(get_settings)) -> None:
    """Mutating endpoints: `Authorization: Bearer TOKEN` when LANDSENTRY_TOKEN is set; open otherwise."""
    if settings.token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.token.encode()):
        raise HTTPException(401, "this server needs a bearer token (Authorization: Bearer ...) for changes",
                            headers={"WWW-Authenticate": "Bearer"})
