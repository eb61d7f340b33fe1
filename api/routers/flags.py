"""GET /v1/flags: the flag register across jobs (api/flag_register.py), as GeoJSON; both backends answer it."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BeforeValidator
from fastapi.concurrency import run_in_threadpool

from landsentry.models.vocabulary.kinds import CHANGE_KIND_NAMES, KIND_NAMES

from landsentry.api.deps import get_store
from landsentry.api.errors import PATTERN_HINTS
from landsentry.api.flag_register import parse_bbox, query_flags
from landsentry.api.openapi import refusals
from landsentry.api.schemas import FlagCollection
from landsentry.api.store import Store

router = APIRouter(prefix="/v1", tags=["flags"])
FlagKind = Literal[KIND_NAMES + CHANGE_KIND_NAMES]  # type: ignore[valid-type]
MAX_LIMIT = 10_000
NUMBER = r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"
BBOX_PATTERN = rf"^{NUMBER},{NUMBER},{NUMBER},{NUMBER}$"
PATTERN_HINTS["bbox"] = "four numbers minlon,minlat,maxlon,maxlat (WGS84 degrees)"


def _a_time_not_a_number(value: Any) -> Any:
    """`since` is an ISO 8601 time; pydantic would also read a bare number as seconds since 1970."""
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("an ISO 8601 date or time (e.g. 2024-05-01 or 2024-05-01T12:00:00Z), not a number")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_a_time_not_a_number)]


@router.get("/flags", response_model=FlagCollection, responses=refusals(422))
async def list_flags(
    bbox: str | None = Query(None, description="minlon,minlat,maxlon,maxlat in WGS84 degrees (-180..180, -90..90, "
                             "min <= max): flags whose geometry intersects it", pattern=BBOX_PATTERN,
                             examples=["-84.40,33.74,-84.38,33.76"]),
    kind: FlagKind | None = Query(None, description="only flags of this kind"),
    suspected: bool | None = Query(None, description="true: only suspected illegal ones; false: only the others"),
    since: IsoTime | None = Query(None, description="only flags recorded at or after this time (ISO 8601; UTC when no zone)"),
    limit: int = Query(1000, ge=1, le=MAX_LIMIT, description="at most this many (then `truncated` is true)"),
    store: Store = Depends(get_store),
) -> Any:
    """Flags of every finished interpretation, across jobs, oldest first (GeoJSON FeatureCollection, WGS84)."""
    box = parse_bbox(bbox) if bbox is not None else None
    return await run_in_threadpool(query_flags, store, box, kind, suspected, since, limit)
