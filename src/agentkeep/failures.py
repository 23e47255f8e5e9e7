"""How whatever escaped an agent (a provider's error, a timeout, a tool) becomes an error of `errors.py`.

`errors.py` is what a caller is told (the HTTP-visible tree); this module is the one mapping into
it, `classify()`, plus the exceptions a run raises inside itself (`ToolError`, `CancelRequested`,
`Detached`, …) that `classify` knows. Messages are written for the caller: they name the problem
and never carry a provider's response body, a stack trace or a secret.
"""

from __future__ import annotations

import asyncio

from pydantic_ai import exceptions as pai

from agentkeep.errors import AgentkeepError, RunFailed

__all__ = ["CancelRequested", "Detached", "ToolError", "ToolInterrupted", "classify"]


class ToolError(Exception):
    """A tool raised; carries the tool's name so the failure can say which one."""

    def __init__(self, tool: str, cause: BaseException) -> None:
        super().__init__(f"tool {tool!r} failed: {type(cause).__name__}")
        self.tool = tool
        self.cause = cause

    def __reduce__(self) -> tuple[object, ...]:
        # A durable run checkpoints a tool's failure by pickling it; the cause may not pickle, its name and text do.
        return (_restore_tool_error, (self.tool, type(self.cause).__name__, str(self.cause)))


def _restore_tool_error(tool: str, cause_type: str, cause_text: str) -> ToolError:
    return ToolError(tool, type(cause_type, (Exception,), {})(cause_text))


class ToolInterrupted(Exception):
    """A tool not declared idempotent was cut mid-call (a crash); it is not run a second time."""

    def __init__(self, message: str) -> None:  # one positional argument, so a checkpoint can unpickle it
        super().__init__(message)


class CancelRequested(BaseException):
    """Stops a durable run on request (`POST /v1/runs/{id}/cancel`), at a step boundary.

    A BaseException, like `asyncio.CancelledError`, so neither an agent's nor a tool's `except
    Exception` can swallow it.
    """


class Detached(BaseException):
    """Stops a durable run without recording any outcome: another execution owns it now.

    Raised when another process took the run over, or when this one stops (a drain out of time)
    and leaves the run for the next process to resume from its checkpoints.
    """


# Pydantic AI's `UsageLimitExceeded` names the `UsageLimits` field; the caller knows the setting.
_LIMITS = {
    "total_tokens_limit": "the run reached its limit of tokens (AGENTKEEP_MAX_TOKENS_PER_RUN)",
    "tool_calls_limit": "the run reached its limit of tool calls (AGENTKEEP_MAX_TOOL_CALLS_PER_RUN)",
    "request_limit": "the run reached its cap on model requests (AGENTKEEP_MAX_MODEL_REQUESTS)",
}


def _limit_message(detail: str) -> str:
    return next((message for field, message in _LIMITS.items() if field in detail), "the run reached a usage limit")


def classify(exc: BaseException) -> RunFailed:
    """The `RunFailed` that reports `exc` to the caller."""
    if isinstance(exc, RunFailed):
        return exc
    if isinstance(exc, AgentkeepError):
        return RunFailed(exc.type, exc.message, retry_after=exc.retry_after)
    if isinstance(exc, asyncio.CancelledError):
        return RunFailed("interrupted", "the run was interrupted before it finished", retry_after=1)
    if isinstance(exc, TimeoutError | pai.RunTimedOut):
        return RunFailed("run_timeout", "the run took longer than its deadline (AGENTKEEP_RUN_TIMEOUT_S)")
    if isinstance(exc, pai.ModelRequestTimeout):
        return RunFailed(
            "run_timeout", "a model request took longer than its deadline (AGENTKEEP_MODEL_REQUEST_TIMEOUT_S)"
        )
    if isinstance(exc, pai.UsageLimitExceeded):
        return RunFailed("iteration_limit", _limit_message(str(exc)))
    if isinstance(exc, ToolError):
        return RunFailed("tool_error", str(exc))
    if isinstance(exc, ToolInterrupted):
        return RunFailed("tool_interrupted", str(exc))
    if isinstance(exc, CancelRequested):
        return RunFailed("cancelled", "the run was cancelled")
    if isinstance(exc, pai.ModelHTTPError):
        return RunFailed("model_error", f"the model provider answered HTTP {exc.status_code}")
    if isinstance(exc, pai.ModelAPIError):
        return RunFailed("model_error", f"the model provider failed: {type(exc).__name__}")
    if isinstance(exc, pai.UnexpectedModelBehavior):
        return RunFailed("model_error", f"the model misbehaved: {exc.message}")
    if isinstance(exc, pai.RunCancelled):
        return RunFailed("cancelled", "the run was cancelled")
    return RunFailed("internal_error", f"the run failed unexpectedly ({type(exc).__name__})")
