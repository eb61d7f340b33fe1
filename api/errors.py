"""One place that turns errors into HTTP answers: {"detail": message} with a 4xx, never a traceback for bad input."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from landsentry.models.vocabulary.errors import LandsentryError


class BodyTooLarge(Exception):
    """The request body passed the configured upload limit (raised while it streams in)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over the upload limit of {limit // (1024 * 1024)} MB")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        kind = err.get("type", "")
        if kind == "missing":
            parts.append(f"missing field {where!r}")
        else:
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "malformed request"


def install(app: FastAPI) -> None:
    @app.exception_handler(LandsentryError)
    async def landsentry_error(request: Request, exc: LandsentryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, BodyTooLarge):  # FastAPI wraps errors raised while parsing a form
            return JSONResponse({"detail": str(cause)}, status_code=413)
        if exc.status_code == 400:  # unparseable body (broken multipart, bad JSON): malformed = 422
            return JSONResponse({"detail": f"malformed request: {exc.detail}"}, status_code=422)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))
