"""Checkpoints: what of a run DBOS records as steps, so that a resumed run replays rather than repeats.

    run_started     the first step of every run workflow: the run marked running, once (runner.py)
    model_request   each model request of an agent run (`DurableSteps`)
    tool_started:N  a marker, then
    tool:N          the tool call itself
    each `@step`    of a task (tasks.py)

`DurableSteps` is the hook that makes each model request and each tool call a DBOS step.

The hook goes first in the run's hook list (outermost). A step that finished before a crash is
not executed again when the run resumes: its checkpointed result is returned instead, and nothing
inside the hook runs for it, so metrics, the budget ledger and the breakers see each real request
exactly once. What the inner layers counted for a replayed model request (tokens, requests) is
re-applied to the run's state from the checkpoint; the cost comes back from the budget ledger.
A tool that runs another agent makes that agent's requests inside its own step (`nesting`: they
are checkpointed with the tool's result, not as steps of their own), so a tool call's checkpoint
carries what they counted too, and a replay re-applies it the same way.

A tool call is two steps: a `tool_started` marker, then the call. When a run resumes and finds
the marker checkpointed but not the call, the tool was cut mid-call: a tool declared idempotent
(`metadata={"idempotent": True}`) runs again with the same idempotency key; any other tool fails
the run with `tool_interrupted` instead of acting twice.

DBOS reports a cancel or a lost ownership as its own BaseExceptions; they become
`CancelRequested` (recorded `cancelled`) and `Detached` (recorded by whoever owns the run now).
This module imports dbos: only `DurableEngine.start()` imports it. (Not to be confused with
`agentkeep.observability.steps`, the timeline of a run's model requests and tool calls.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from dbos import DBOS, StepOptions
from dbos import error as dbos_error
from pydantic_ai.messages import ModelResponse

from agentkeep.durable._dbos import read_status
from agentkeep.failures import CancelRequested, Detached, ToolInterrupted
from agentkeep.hooks import Hook, ModelCall, ModelProceed, RunState, ToolCall, ToolProceed, idempotency_scope

__all__ = ["DurableSteps", "workflow_status"]

T = TypeVar("T")

# The counts a model request adds to the run inside this hook (the pipeline's innermost layer).
_MODEL_COUNTS = ("requests", "input_tokens", "output_tokens")
# And a tool call, whose body may run agents: everything but itself (the pipeline counts it outside).
_TOOL_COUNTS = (*_MODEL_COUNTS, "tool_calls")


@dataclass
class _ToolResult:
    """A tool call's checkpoint: its result, and what the agent runs inside it added to the run."""

    result: Any
    counted: dict[str, int]


class DurableSteps(Hook):
    """Checkpoints model requests and tool calls while running inside a DBOS workflow."""

    async def wrap_model_request(self, run: RunState, call: ModelCall, proceed: ModelProceed) -> ModelResponse:
        if DBOS.workflow_id is None:
            return await proceed()
        executed = False

        async def model_request() -> tuple[ModelResponse, dict[str, int]]:
            nonlocal executed
            executed = True
            before = run.usage.as_dict()
            response = await proceed()
            after = run.usage.as_dict()
            return response, {name: after[name] - before[name] for name in _MODEL_COUNTS}

        # Preemptible: a cancel stops a slow request at once rather than after it answers.
        response, counted = await _step({"name": "model_request", "preemptible": True}, model_request)
        if not executed:  # replayed from the checkpoint: nothing inside ran, so count it here
            for name, value in counted.items():
                setattr(run.usage, name, getattr(run.usage, name) + value)
        return response

    async def wrap_tool_call(self, run: RunState, call: ToolCall, proceed: ToolProceed) -> Any:
        if DBOS.workflow_id is None:
            return await proceed()
        marked_now = False

        async def tool_started() -> str:
            nonlocal marked_now
            marked_now = True
            return call.call_id

        await _step({"name": f"tool_started:{call.name}"}, tool_started)
        idempotent = bool((call.metadata or {}).get("idempotent"))

        executed = False

        async def tool_call() -> _ToolResult:
            nonlocal executed
            executed = True
            if not marked_now and not idempotent:
                # The marker is an earlier execution's and the call never finished: a crash cut it.
                raise ToolInterrupted(
                    f"tool {call.name!r} was interrupted mid-call and is not declared idempotent, "
                    "so it was not run again"
                )
            step = DBOS.step_status.step_id if DBOS.step_status is not None else 0
            before = run.usage.as_dict()
            # Stable across replays, takeovers and resumes: the run id, and the step's number in order;
            # after a wait for tool decisions, steps count again from 1, so the resume is in the key.
            run_key = (DBOS.workflow_id or "").split("~", 1)[0] + (f".r{run.resumes}" if run.resumes else "")
            with idempotency_scope(f"{run_key}:{step}"):
                result = await proceed()
            after = run.usage.as_dict()
            return _ToolResult(result, {name: after[name] - before[name] for name in _TOOL_COUNTS})

        recorded: Any = await _step({"name": f"tool:{call.name}"}, tool_call)
        if not isinstance(recorded, _ToolResult):  # checkpointed by a version before nested agents counted
            return recorded
        if not executed:
            for name, value in recorded.counted.items():
                setattr(run.usage, name, getattr(run.usage, name) + value)
        return recorded.result


async def _step(options: StepOptions, body: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `body` as a checkpointed step, mapping DBOS's stop signals to agentkeep's."""
    try:
        result: T = await DBOS.run_step_async(options, body)
    except dbos_error.DBOSWorkflowCancelledError:
        raise CancelRequested() from None
    except dbos_error.DBOSWorkflowConflictIDError:
        # A step that finished after a cancel cannot record its output either: tell the two apart.
        if await workflow_status(DBOS.workflow_id or "") == "CANCELLED":
            raise CancelRequested() from None
        raise Detached() from None
    return result


async def workflow_status(workflow_id: str) -> str | None:
    """DBOS's status of a workflow (PENDING, CANCELLED, ...), read outside any step (`_dbos.read_status`)."""
    return await asyncio.to_thread(read_status, workflow_id)
