"""Exception handlers: our typed errors become HTTP answers with a message that says what to do.

Bad input is always a 4xx; a 5xx means the service or the engine is broken, never the request.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    BodyValidationError,
    CIRError,
    EngineError,
    ImageTooLargeError,
    IndexMismatchError,
    InputError,
    ManifestError,
    ModelNotFoundError,
    UnsupportedQueryError,
)
from .inputs import UploadTooLargeError
from .workers import ServiceBusyError

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of decides the status.
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (ImageTooLargeError, 413),
    (UploadTooLargeError, 413),
    (InputError, 422),
    (UnsupportedQueryError, 400),
    (BodyValidationError, 400),
    (IndexMismatchError, 409),
    (ModelNotFoundError, 503),
    (ManifestError, 503),
    (ServiceBusyError, 503),
)


def status_of(error: Exception) -> int:
    """The HTTP status that answers `error`."""
    if isinstance(error, EngineError):
        return _engine_status(error.status)
    if hasattr(error, "status_code"):  # opensearch-py TransportError; 'N/A' when the cluster is unreachable
        status = error.status_code
        return _engine_status(status) if isinstance(status, int) else 502
    for kind, code in _STATUS:
        if isinstance(error, kind):
            return code
    return 500


def _engine_status(status: int) -> int:
    # The engine's 4xx answers describe our request and pass through; its failures are a bad gateway.
    return status if 400 <= status < 500 else 502


def _message(error: Exception) -> str:
    status = status_of(error)
    text = str(error) or type(error).__name__
    if status == 404 and "index_not_found" in f"{getattr(error, 'error_type', '')} {getattr(error, 'error', '')}":
        text += " (create and fill the index first: `cir setup` then `cir ingest`, or `cir demo`)"
    return text


def error_response(error: Exception) -> JSONResponse:
    status = status_of(error)
    if status >= 500 and not isinstance(error, ServiceBusyError):
        log.error("request failed: %s", error, exc_info=error)
    headers = {"Retry-After": "1"} if isinstance(error, ServiceBusyError) else None
    return JSONResponse({"detail": _message(error), "error": type(error).__name__}, status_code=status, headers=headers)


async def _http_error(request: Request, error: StarletteHTTPException):
    """Starlette's form parser refuses a field over 1 MiB with 400: that is a too-long text, 422 like
    every other limit of a text field."""
    if error.status_code == 400 and "maximum size" in str(error.detail):
        return JSONResponse({"detail": f"{error.detail} Text fields are limited to CIR_MAX_TEXT_CHARS characters; "
                                       "send images as files.", "error": "InputError"}, status_code=422)
    return await http_exception_handler(request, error)


async def _cir_error(_: Request, error: Exception) -> JSONResponse:
    return error_response(error)


async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path", "header"))
        problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return JSONResponse({"detail": "; ".join(problems) or "invalid request", "errors": jsonable(error.errors())},
                        status_code=422)


def jsonable(errors: list[dict]) -> list[dict]:
    """Validation errors without the raw input (which may be binary or huge)."""
    return [{key: value for key, value in item.items() if key in ("loc", "msg", "type")} for item in errors]


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(CIRError, _cir_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    try:
        from opensearchpy.exceptions import TransportError
    except ImportError:  # pragma: no cover - opensearch-py is a dependency
        return
    app.add_exception_handler(TransportError, _cir_error)
