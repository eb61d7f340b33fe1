"""One place that turns errors into HTTP answers: {"detail": message} with a 4xx, never a traceback for bad input."""
from __future__ import annotations

import re

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from landsentry.models.vocabulary.errors import InputError, LandsentryError


class BodyTooLarge(Exception):
    """The request body passed the configured upload limit (raised while it streams in)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over the upload limit of {limit // (1024 * 1024)} MB")


FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
PATTERN_HINTS: dict[str, str] = {}
"""Parameter name -> what its `pattern` means in words (routers register theirs), instead of the regex itself."""


def _takes_form(request: Request) -> bool:
    """Whether the matched route reads form fields (files), not JSON."""
    route = request.scope.get("route")
    body = getattr(getattr(route, "dependant", None), "body_params", [])
    return any(isinstance(p.field_info, (params.Form, params.File)) for p in body)


def not_form(request: Request) -> str | None:
    """What to tell a client that sent a form route something other than a form (None: it sent a form)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in FORM_TYPES:
        return None
    sent = f"was sent as {content_type}" if content_type else "had no form body"
    return (f"this request must be multipart/form-data, with the files as form fields "
            f"(e.g. curl -F image=@scene.tif {request.url.path}); it {sent}")


def require_form(request: Request) -> None:
    """A dependency for form routes whose fields are all optional (no validation error would say it)."""
    if (message := not_form(request)) is not None:
        raise InputError(message)


def _validation_message(request: Request, exc: RequestValidationError) -> str:
    if _takes_form(request) and (message := not_form(request)) is not None:
        return message
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        kind, message = err.get("type", ""), err.get("msg", "invalid")
        if kind == "missing":
            parts.append(f"missing field {where!r}")
        elif kind == "string_pattern_mismatch" and where in PATTERN_HINTS:
            parts.append(f"{where}: {PATTERN_HINTS[where]}, not {str(err.get('input'))[:60]!r}")
        elif "Expected UploadFile" in message:
            parts.append(f"{where} must be a file (a form part with a filename), not a text field")
        else:
            parts.append(f"{where or 'request'}: {message}")
    return "; ".join(parts) or "malformed request"


def allowed_methods(request: Request) -> str:
    """The methods the OpenAPI document lists for this path (HEAD with GET, as Starlette serves it), for the
    `Allow` header of a 405: Starlette's own names only the first route of the path."""
    for template, operations in request.app.openapi()["paths"].items():
        pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^/]+\})", template))
        if re.fullmatch(pattern, request.url.path):
            methods = {m.upper() for m in operations}
            return ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
    return ""


def install(app: FastAPI) -> None:
    @app.exception_handler(LandsentryError)
    async def landsentry_error(request: Request, exc: LandsentryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(request, exc)}, status_code=422)

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
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405 and (allow := allowed_methods(request)):
            headers["Allow"] = allow
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers or None)
