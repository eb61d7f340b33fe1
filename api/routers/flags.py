"""GET /v1/flags: the flag register across jobs (api/flag_register.py), as GeoJSON; both backends answer it."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from landsentry.models.vocabulary.kinds import CHANGE_KIND_NAMES, KIND_NAMES

from landsentry.api.deps import get_store
from landsentry.api.flag_register import parse_bbox, query_flags
from landsentry.api.openapi import refusals
from landsentry.api.schemas import FlagCollection
from landsentry.api.store import Store

router = APIRouter(prefix="/v1", tags=["flags"])
FlagKind = Literal[KIND_NAMES + CHANGE_KIND_NAMES]  # type: ignore[valid-type]
MAX_LIMIT = 10_000


@router.get("/flags", response_model=FlagCollection, responses=refusals(422))
async def list_flags(
    bbox: str | None = Query(None, description="minlon,minlat,maxlon,maxlat in WGS84 degrees: flags whose geometry intersects it",
                             examples=["-84.40,33.74,-84.38,33.76"]),
    kind: FlagKind | None = Query(None, description="only flags of this kind"),
    suspected: bool | None = Query(None, description="true: only suspected illegal ones; false: only the others"),
    since: datetime | None = Query(None, description="only flags recorded at or after this time (ISO 8601; UTC when no zone)"),
    limit: int = Query(1000, ge=1, le=MAX_LIMIT, description="at most this many (then `truncated` is true)"),
    store: Store = Depends(get_store),
) -> Any:
    """Flags of every finished interpretation, across jobs, oldest first (GeoJSON FeatureCollection, WGS84)."""
    box = parse_bbox(bbox) if bbox is not None else None
    return await run_in_threadpool(query_flags, store, box, kind, suspected, since, limit)
