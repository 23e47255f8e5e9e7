"""The `StepRecorder` hook: each run's timeline of model requests and tool calls, kept with the run.

It runs on every run, so it does the least it can: per step one tuple appended to a list in memory;
at the end the runtime turns the list into JSON once (`steps_json`) and the store writes it in the
transaction that records the run's outcome. While a run executes, `live(run_id)` lends its steps so
far to `GET /v1/runs/{id}/steps`.

Put it last in the runtime's hooks: it then times the request as sent, not the budget's or the
breaker's work around it. A durable run resumed after a crash records only what it does after the
resume; the steps replayed from its checkpoints are not seen again.

    {"index": 0, "kind": "model_request", "name": "gpt-4o-mini", "started_at": 1764158400.12,
     "duration_ms": 812.4, "outcome": "ok", "input_tokens": 120, "output_tokens": 31}
    {"index": 1, "kind": "tool_call", "name": "add", "started_at": …, "duration_ms": 0.3,
     "outcome": "error", "error": "tool 'add' failed: ValueError"}
"""

from __future__ import annotations

import json
import time
from typing import Any, NamedTuple

from pydantic_ai.messages import ModelResponse

from agentkeep.failures import classify
from agentkeep.hooks import Hook, ModelCall, ModelProceed, RunOutcome, RunState, ToolCall, ToolProceed

__all__ = ["Step", "StepRecorder", "joined_steps", "step_views", "steps_json"]

_KEY = "steps"


class Step(NamedTuple):
    """One model request or tool call; `error` is None when it succeeded."""

    kind: str  # model_request | tool_call
    name: str  # the model's name, or the tool's
    started_at: float  # UNIX seconds
    duration_ms: float
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class StepRecorder(Hook):
    """Records every run's steps in `RunState.extras["steps"]`; see the module docstring."""

    def __init__(self) -> None:
        self._live: dict[str, list[Step]] = {}

    def live(self, run_id: str) -> list[dict[str, Any]] | None:
        """The steps so far of a run executing in this process; None when it is not."""
        steps = self._live.get(run_id)
        return None if steps is None else step_views(list(steps))

    async def before_run(self, run: RunState) -> None:
        steps: list[Step] = []
        run.extras[_KEY] = steps
        self._live[run.run_id] = steps

    async def after_run(self, run: RunState, outcome: RunOutcome) -> None:
        self._live.pop(run.run_id, None)

    async def wrap_model_request(self, run: RunState, call: ModelCall, proceed: ModelProceed) -> ModelResponse:
        steps: list[Step] | None = run.extras.get(_KEY)
        started, clock = time.time(), time.perf_counter()
        try:
            response = await proceed()
        except BaseException as exc:
            if steps is not None:
                steps.append(Step("model_request", call.model_name, started, _ms(clock), _error(exc)))
            raise
        if steps is not None:
            usage = response.usage
            ms = _ms(clock)
            steps.append(
                Step("model_request", call.model_name, started, ms, None, usage.input_tokens, usage.output_tokens)
            )
        return response

    async def wrap_tool_call(self, run: RunState, call: ToolCall, proceed: ToolProceed) -> Any:
        steps: list[Step] | None = run.extras.get(_KEY)
        started, clock = time.time(), time.perf_counter()
        try:
            result = await proceed()
        except BaseException as exc:
            if steps is not None:
                steps.append(Step("tool_call", call.name, started, _ms(clock), _error(exc)))
            raise
        if steps is not None:
            steps.append(Step("tool_call", call.name, started, _ms(clock)))
        return result


def steps_json(run: RunState) -> bytes | None:
    """The run's steps as stored with it; None for a run no `StepRecorder` watched."""
    steps: list[Step] | None = run.extras.get(_KEY)
    return None if steps is None else json.dumps(step_views(steps), separators=(",", ":")).encode()


def joined_steps(before: bytes | None, after: bytes | None) -> bytes | None:
    """Two stored step lists as one, renumbered: a run's steps before a pause, then after its resume."""
    if before is None or after is None:
        return after if before is None else before
    views = [*json.loads(before), *json.loads(after)]
    for index, view in enumerate(views):
        view["index"] = index
    return json.dumps(views, separators=(",", ":")).encode()


def step_views(steps: list[Step]) -> list[dict[str, Any]]:
    """Steps in the API's form, in the order they started (tools called together finish in any order)."""
    views: list[dict[str, Any]] = []
    for index, step in enumerate(sorted(steps, key=lambda s: s.started_at)):
        view: dict[str, Any] = {
            "index": index,
            "kind": step.kind,
            "name": step.name,
            "started_at": round(step.started_at, 6),
            "duration_ms": round(step.duration_ms, 3),
            "outcome": "ok" if step.error is None else "error",
        }
        if step.input_tokens is not None:
            view["input_tokens"] = step.input_tokens
            view["output_tokens"] = step.output_tokens
        if step.error is not None:
            view["error"] = step.error
        views.append(view)
    return views


def _ms(clock: float) -> float:
    return (time.perf_counter() - clock) * 1000


def _error(exc: BaseException) -> str:
    """What went wrong, in the words a failed run reports (never a provider's body or a secret);
    Pydantic AI's control flow (a tool asking the model to retry, a deferral) by its class name."""
    failure = classify(exc)
    return type(exc).__name__ if failure.error_type == "internal_error" else failure.message
