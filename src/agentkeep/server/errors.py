"""Every error, from every route and from the framework, becomes the contract's envelope."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentkeep.errors import AgentkeepError, InvalidRequest, ValidationFailed, envelope, type_for_status

__all__ = ["error_response", "install_error_handlers"]

log = structlog.get_logger("agentkeep.server")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AgentkeepError, _agentkeep_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


def error_response(exc: AgentkeepError) -> JSONResponse:
    return JSONResponse(exc.envelope(), status_code=exc.http_status, headers=exc.headers())


async def _agentkeep_error(_: Request, exc: AgentkeepError) -> JSONResponse:
    return error_response(exc)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(InvalidRequest("request body is not valid JSON"))
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return error_response(InvalidRequest("request body is empty: send a JSON object"))
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    message = f"{where}: {first.get('msg', 'invalid value')}"
    return error_response(ValidationFailed(message))


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    error_type = type_for_status(exc.status_code)
    messages = {404: "no such route", 405: "method not allowed on this route"}
    message = messages.get(exc.status_code) or str(exc.detail)
    return JSONResponse(envelope(error_type, message), status_code=exc.status_code, headers=exc.headers)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", exc_info=exc)
    return error_response(AgentkeepError("an internal error occurred; it has been logged"))
