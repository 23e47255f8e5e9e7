"""The `Telemetry` hook: one log event, metric update and stats sample per run, model request and tool call.

Put it first in the runtime's hooks, so the latencies it measures include every other hook and it
sees requests that inner hooks (breaker, budget) refuse:

    Runtime(settings, agents, store, hooks=[Telemetry(settings), ...])

Events (logger `agentkeep.runtime`, so `component` is `runtime`):

    run.started     background
    model.request   model, latency_ms, input_tokens, output_tokens, cost_usd, attempt, outcome
    tool.call       tool, latency_ms, outcome
    run.finished    status, error_type, duration_ms, input_tokens, output_tokens, cost_usd,
                    tool_calls, iterations

A failure adds `exc_type` (the Python exception's class) and `exception` (its stack, rendered by
the log pipeline); a failed run's `run.finished` is at error level, a failed request's at warning.

Each carries `run_id`, `session_id`, `user_id` and `agent`, which are also bound to structlog's
context variables for the run, so any other event logged while it runs carries them too. Prompts,
model output and tool arguments appear only in debug-level events (`model.text`, `tool.args`).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic_ai import exceptions as pai
from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart

import agentkeep.observability.metrics as metrics
from agentkeep.config import Settings
from agentkeep.errors import AgentkeepError
from agentkeep.hooks import Hook, ModelCall, ModelProceed, RunOutcome, RunState, ToolCall, ToolProceed
from agentkeep.observability.stats import ERROR_STATUSES, RunSample, RunStats

__all__ = ["Telemetry"]

_KEY = "telemetry"
_RETRY = (pai.ModelRetry, pai.ToolRetryError)
_DEFERRED = (pai.CallDeferred, pai.ApprovalRequired)
_TIMEOUT = (TimeoutError, pai.ModelRequestTimeout, pai.ModelTimeoutError)


@dataclass
class _RunScope:
    log: Any
    context_tokens: Mapping[str, Token[Any]]


class Telemetry(Hook):
    """Logs, Prometheus metrics and `/v1/stats` samples for every run this process executes."""

    def __init__(self, settings: Settings | None = None, *, stats: RunStats | None = None) -> None:
        self.stats = stats or RunStats()
        self._debug = settings is not None and settings.log_level == "debug"
        # Resolved on first use, after the entry point configured logging.
        self._log = structlog.get_logger("agentkeep.runtime")

    async def before_run(self, run: RunState) -> None:
        ids = {"run_id": run.run_id, "session_id": run.session_id, "user_id": run.user_id, "agent": run.agent}
        scope = _RunScope(self._log.bind(**ids), structlog.contextvars.bind_contextvars(**ids))
        run.extras[_KEY] = scope
        metrics.ACTIVE_RUNS.inc()
        self.stats.begin()
        scope.log.info("run.started", background=run.background)

    async def after_run(self, run: RunState, outcome: RunOutcome) -> None:
        scope: _RunScope | None = run.extras.pop(_KEY, None)
        if scope is None:  # before_run never ran for this run: nothing was counted in
            return
        duration = time.monotonic() - run.started
        usage = run.usage
        agent = metrics.bounded("agent", run.agent)
        metrics.ACTIVE_RUNS.dec()
        metrics.RUNS.labels(agent, outcome.status).inc()
        metrics.RUN_DURATION.labels(agent).observe(duration)
        metrics.RUN_ITERATIONS.labels(agent).observe(usage.requests)
        error = outcome.status in ERROR_STATUSES
        tokens = usage.input_tokens + usage.output_tokens
        self.stats.end(RunSample(duration * 1000, tokens, usage.requests, usage.tool_calls, error))
        fields: dict[str, Any] = {
            "status": outcome.status,
            "duration_ms": round(duration * 1000, 3),
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cost_usd": run.cost_usd,
            "tool_calls": usage.tool_calls,
            "iterations": usage.requests,
        }
        if outcome.error_type is not None:
            fields["error_type"] = outcome.error_type
        if error:
            scope.log.error("run.finished", **fields, **_exception_fields(outcome.error))
        else:
            scope.log.info("run.finished", **fields)
        _unbind(scope.context_tokens)

    async def wrap_model_request(self, run: RunState, call: ModelCall, proceed: ModelProceed) -> ModelResponse:
        scope: _RunScope | None = run.extras.get(_KEY)
        model = metrics.bounded("model", call.model_name)
        cost_before = run.cost_usd
        started = time.perf_counter()
        try:
            response = await proceed()
        except BaseException as exc:
            latency = time.perf_counter() - started
            outcome = _model_outcome(exc)
            metrics.MODEL_REQUESTS.labels(model, outcome).inc()
            if outcome != "refused":  # a request an inner hook refused never reached the model
                metrics.MODEL_LATENCY.labels(model).observe(latency)
            if scope is not None:
                scope.log.warning(
                    "model.request",
                    model=model,
                    latency_ms=round(latency * 1000, 3),
                    attempt=call.attempt,
                    outcome=outcome,
                    **_exception_fields(exc),
                )
            raise
        latency = time.perf_counter() - started
        usage = response.usage
        metrics.MODEL_REQUESTS.labels(model, "ok").inc()
        metrics.MODEL_LATENCY.labels(model).observe(latency)
        metrics.TOKENS.labels(model, "input").inc(usage.input_tokens)
        metrics.TOKENS.labels(model, "output").inc(usage.output_tokens)
        if scope is not None:
            cost = None if run.cost_usd is None or cost_before is None else run.cost_usd - cost_before
            scope.log.info(
                "model.request",
                model=model,
                latency_ms=round(latency * 1000, 3),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=cost,
                attempt=call.attempt,
                outcome="ok",
            )
            if self._debug:
                scope.log.debug(
                    "model.text", model=model, prompt=_last_prompt(call), response_text=_response_text(response)
                )
        return response

    async def wrap_tool_call(self, run: RunState, call: ToolCall, proceed: ToolProceed) -> Any:
        scope: _RunScope | None = run.extras.get(_KEY)
        tool = metrics.bounded("tool", call.name)
        if self._debug and scope is not None:
            scope.log.debug("tool.args", tool=tool, args=call.args)
        started = time.perf_counter()
        try:
            result = await proceed()
        except BaseException as exc:
            latency = time.perf_counter() - started
            outcome = _tool_outcome(exc)
            metrics.TOOL_CALLS.labels(tool, outcome).inc()
            metrics.TOOL_LATENCY.labels(tool).observe(latency)
            if scope is not None:
                fields = _exception_fields(exc) if outcome == "error" else {"exc_type": type(exc).__name__}
                level = scope.log.warning if outcome == "error" else scope.log.info
                level("tool.call", tool=tool, latency_ms=round(latency * 1000, 3), outcome=outcome, **fields)
            raise
        latency = time.perf_counter() - started
        metrics.TOOL_CALLS.labels(tool, "ok").inc()
        metrics.TOOL_LATENCY.labels(tool).observe(latency)
        if scope is not None:
            scope.log.info("tool.call", tool=tool, latency_ms=round(latency * 1000, 3), outcome="ok")
        return result


def _model_outcome(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, AgentkeepError):
        return "refused"
    if isinstance(exc, _TIMEOUT):
        return "timeout"
    if isinstance(exc, pai.ModelRateLimitError) or (isinstance(exc, pai.ModelHTTPError) and exc.status_code == 429):
        return "rate_limited"
    return "error"


def _tool_outcome(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, _RETRY):
        return "retry"
    if isinstance(exc, _DEFERRED):
        return "deferred"
    return "error"


def _exception_fields(exc: BaseException | None) -> dict[str, Any]:
    """The exception's type, and its stack when the stack can help.

    A cancellation's stack says nothing, nor does an `AgentkeepError` (a budget or an open breaker
    refusing, a deadline): agentkeep raised those on purpose. The stack is formatted here, as the
    log pipeline formats the stdlib's: one string, no frame locals (where clients keep keys), cheap
    whatever renderer is configured.
    """
    if exc is None:
        return {}
    cause = getattr(exc, "cause", None)  # agentkeep's ToolError wraps what the tool raised
    shown = cause if isinstance(cause, BaseException) else exc
    fields: dict[str, Any] = {"exc_type": type(shown).__name__}
    if not isinstance(exc, asyncio.CancelledError | AgentkeepError):
        fields["exception"] = "".join(traceback.format_exception(exc)).rstrip()
    return fields


def _unbind(tokens: Mapping[str, Token[Any]]) -> None:
    try:
        structlog.contextvars.reset_contextvars(**tokens)
    except ValueError:  # after_run ran in another context than before_run: unbind by name instead
        structlog.contextvars.unbind_contextvars(*tokens)


def _last_prompt(call: ModelCall) -> str:
    for message in reversed(call.messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def _response_text(response: ModelResponse) -> str:
    return "".join(part.content for part in response.parts if isinstance(part, TextPart))
