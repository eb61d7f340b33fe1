"""What the OpenAPI document says beyond the response models: each route's refusals and file downloads.

Every 4xx of this service has the body `{"detail": str}` (api/errors.py turns every error into it);
`refusals(...)` documents the codes a route can answer with that body, replacing FastAPI's default
422 (a list of validation errors), which this service never sends. `install` adds what FastAPI's
parameters cannot say (a sample takes an image or a job_id, and a mask or vectors: exactly one of each).
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from landsentry.api.schemas import ErrorBody

REFUSALS = {
    401: "LANDSENTRY_TOKEN is set and the request has no matching `Authorization: Bearer` header",
    404: "nothing with this id (or file name) exists",
    409: "the service's state does not allow it now (see detail)",
    413: "the request body is over LANDSENTRY_MAX_UPLOAD_MB, or an image over its pixel limit",
    415: "a file is not a PNG, JPEG or GeoTIFF (judged by its bytes)",
    422: "the request or one of its files cannot be used (see detail)",
}
CHANGES = (401, 413)  # any POST or DELETE: the token, and the body limit


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these status codes, each with the `{"detail": str}` body."""
    return {code: {"model": ErrorBody, "description": REFUSALS[code]} for code in sorted(set(codes))}


def download(media_types: list[str], what: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` entry for a route that answers with a file of one of these types, not JSON."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {200: {"description": what, "content": {media: binary for media in media_types}}}


EXACTLY_ONE_OF = {("/v1/samples", "post"): (("image", "job_id"), ("mask", "vectors"))}
"""Groups of form fields of which a request must give exactly one each: a rule FastAPI's parameters cannot state."""


def install(app: FastAPI, caps: dict[str, int]) -> None:
    """`app.openapi` with the rules above added to the request bodies, and this server's caps on a train
    request (`caps`: TrainRequest field -> largest value the settings allow), so the document says what is refused."""
    build = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            for (path, method), groups in EXACTLY_ONE_OF.items():
                ref = doc["paths"][path][method]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
                rules = [{"oneOf": [{"required": [f]} for f in fields]} for fields in groups]
                doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]["allOf"] = rules
            train = doc["components"]["schemas"]["TrainRequest"]["properties"]
            for field, cap in caps.items():
                train[field]["maximum"] = min(cap, train[field].get("maximum", cap))
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
