"""What a caller is told: the HTTP-visible error tree, and the one place an error becomes the envelope.

(How an exception that escaped an agent becomes one of these is `failures.py`.)

Every error a user can see derives from `AgentkeepError` and carries its `type` and HTTP
`status` once, so the server renders `{"error": {"type", "message"}}` without a table of its own:

    AgentkeepError                     500 internal_error
    ├── InvalidRequest                 400 invalid_request
    ├── Unauthorized                   401 unauthorized
    ├── BudgetExceeded                 402 budget_exceeded
    ├── PriceUnknown                   402 price_unknown
    ├── NotFound                       404 not_found
    ├── MethodNotAllowed               405 method_not_allowed
    ├── SessionBusy                    409 session_busy
    │   └── ApprovalPending            409 approval_pending    (its run waits for a decision)
    ├── NotWaiting                     409 not_waiting
    ├── PayloadTooLarge                413 payload_too_large
    ├── ValidationFailed               422 validation_error
    ├── RateLimited                    429 rate_limited        (Retry-After)
    ├── Unavailable                    503                     (Retry-After)
    │   ├── Draining                   503 draining
    │   ├── Overloaded                 503 overloaded
    │   └── CircuitOpen                503 circuit_open
    ├── RunFailed                      `type` is the run's failure reason; 402/503 per the
    │                                  contract's table for budget and circuit types, else 500
    ├── ConfigError                    a mistake in the configuration or the TARGET, found at
    │                                  startup: the CLI prints one line, exit 2
    └── StartupFailed                  the environment refused a start (database unreachable,
                                       port in use, an AgentApp's lifespan that raised): the
                                       CLI prints one line, exit 1

A run that fails after it started records one of `RUN_FAILURE_TYPES` as its error type.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

__all__ = [
    "RUN_FAILURE_STATUS",
    "RUN_FAILURE_TYPES",
    "AgentkeepError",
    "ApprovalPending",
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigError",
    "Draining",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "NotWaiting",
    "Overloaded",
    "PayloadTooLarge",
    "PriceUnknown",
    "RateLimited",
    "RunFailed",
    "SessionBusy",
    "StartupFailed",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "envelope",
    "render",
    "send_envelope",
    "type_for_status",
]

RUN_FAILURE_TYPES = frozenset(
    {
        "budget_exceeded",
        "circuit_open",
        "model_error",
        "run_timeout",
        "iteration_limit",
        "tool_error",
        "tool_interrupted",
        "cancelled",
        "interrupted",
        "internal_error",
        "price_unknown",  # a run refused before its first model request: its model has no price
    }
)

# The HTTP status of a synchronous run that failed this way (the contract's table); otherwise 500.
RUN_FAILURE_STATUS = {
    "budget_exceeded": 402,
    "price_unknown": 402,
    "circuit_open": 503,
    "interrupted": 503,  # stopped by a shutdown's drain: another instance can take the retry
}


class AgentkeepError(Exception):
    """Root of every error agentkeep shows to a user."""

    type: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def envelope(self) -> dict[str, Any]:
        """The contract's error body for this error."""
        return {"error": {"type": self.type, "message": self.message}}

    @property
    def http_status(self) -> int:
        """The status of the HTTP response that reports this error."""
        return self.status

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class InvalidRequest(AgentkeepError):
    type = "invalid_request"
    status = 400


class Unauthorized(AgentkeepError):
    type = "unauthorized"
    status = 401


class BudgetExceeded(AgentkeepError):
    type = "budget_exceeded"
    status = 402


class PriceUnknown(AgentkeepError):
    type = "price_unknown"
    status = 402


class NotFound(AgentkeepError):
    type = "not_found"
    status = 404


class MethodNotAllowed(AgentkeepError):
    type = "method_not_allowed"
    status = 405


class SessionBusy(AgentkeepError):
    type = "session_busy"
    status = 409


class ApprovalPending(SessionBusy):
    """The session's run waits for a decision on a tool call: resume or cancel it first."""

    type = "approval_pending"


class NotWaiting(AgentkeepError):
    """A resume of a run that is not waiting for a decision (never was, or was resumed already)."""

    type = "not_waiting"
    status = 409


class PayloadTooLarge(AgentkeepError):
    type = "payload_too_large"
    status = 413


class ValidationFailed(AgentkeepError):
    type = "validation_error"
    status = 422


class RateLimited(AgentkeepError):
    type = "rate_limited"
    status = 429


class Unavailable(AgentkeepError):
    """The server cannot take this request now; the client should retry later."""

    type = "overloaded"
    status = 503


class Draining(Unavailable):
    type = "draining"


class Overloaded(Unavailable):
    type = "overloaded"


class CircuitOpen(Unavailable):
    type = "circuit_open"


class RunFailed(AgentkeepError):
    """A run that started and then failed; `type` is one of `RUN_FAILURE_TYPES`."""

    status = 500

    def __init__(self, error_type: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.error_type = error_type

    @property
    def http_status(self) -> int:
        """402 for a budget refusal, 503 for an open circuit, as the error table says; else 500."""
        return RUN_FAILURE_STATUS.get(self.error_type, self.status)

    def envelope(self) -> dict[str, Any]:
        return {"error": {"type": self.error_type, "message": self.message}}


class ConfigError(AgentkeepError):
    """A problem with the configuration or the TARGET, found at startup."""

    type = "invalid_request"
    status = 400


class StartupFailed(AgentkeepError):
    """What the process needs is not there (the database does not answer, the port is taken); its
    message says which setting or flag to change."""


# The errors a bare HTTP status stands for when it is raised outside the tree (the framework's 404 and
# 405): each `type` is read off its class, so the tree above stays the one status→type table.
_STATUS_ERRORS: dict[int, type[AgentkeepError]] = {
    cls.status: cls
    for cls in (
        InvalidRequest,
        Unauthorized,
        NotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        ValidationFailed,
        RateLimited,
        Unavailable,
    )
}


def type_for_status(status: int) -> str:
    """The envelope's `type` for a bare HTTP status: 404 `not_found`, 503 `overloaded`, …; a status
    none of those errors has is `internal_error` from 500 up, else `invalid_request`."""
    error = _STATUS_ERRORS.get(status)
    if error is not None:
        return error.type
    return AgentkeepError.type if status >= 500 else InvalidRequest.type


def render(body: dict[str, Any]) -> bytes:
    """A JSON body as the framework's `JSONResponse` writes it (compact, UTF-8), so an error from a
    middleware reads byte for byte like one from a route."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def envelope(error_type: str, message: str) -> dict[str, Any]:
    """The contract's error body, for errors raised outside the tree (framework, middleware)."""
    return {"error": {"type": error_type, "message": message}}


async def send_envelope(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    error: AgentkeepError,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer `error` straight from an ASGI middleware, before the app has started a response;
    its own headers (`Retry-After`) go before `headers`."""
    body = render(error.envelope())
    own = [(name.lower().encode(), value.encode()) for name, value in error.headers().items()]
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *own, *headers]
    await send({"type": "http.response.start", "status": error.http_status, "headers": start})
    await send({"type": "http.response.body", "body": body})
