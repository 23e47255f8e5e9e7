"""Multi-step tasks: a durable function of steps, each retried on its own and remembered once done.

Declared in the TARGET module, next to the agents::

    from agentkeep.durable import ask, step, task

    @step                                   # 3 retries by default: waits 1, 2, 4 s between attempts
    async def plan(topic: str) -> list[str]:
        return (await ask(planner, f"Plan research on {topic}")).splitlines()

    @task("research")                       # POST /v1/tasks/research {"input": {"topic": "..."}}
    async def research(input: dict) -> str:
        steps = await plan(input["topic"])
        return "\\n".join([await execute(s) for s in steps])

A task runs as the DBOS workflow `agentkeep.task`, queued per user like a background run and
polled with `GET /v1/runs/{run_id}`. Each `@step` call inside it is a DBOS step: after a crash the
task resumes and every step that finished returns its recorded result instead of running again
(so a step's arguments and result must pickle, and the task's code must call the same steps in
the same order given the same results). Outside a task a step is a plain call, handy in tests.
A step that fails after its retries fails the task with that step's error; a budget refusal
is not retried. `ask()` inside a task goes through the run pipeline (`asking.py`): the task's run
records what its agent calls used and cost, and its budget caps them.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from pydantic_ai import Agent

from agentkeep.durable.asking import CURRENT, Tally, TaskContext, current_tally, tally_scope
from agentkeep.errors import BudgetExceeded, NotFound, PriceUnknown, RunFailed
from agentkeep.failures import CancelRequested, classify
from agentkeep.hooks import RunOutcome, RunState
from agentkeep.models import resolve_model
from agentkeep.runtime import new_id
from agentkeep.stores.base import RunRecord, RunStatus

if TYPE_CHECKING:
    from agentkeep.durable.engine import DurableEngine

__all__ = ["TASKS", "TaskFunction", "ask", "step", "task"]

P = ParamSpec("P")
R = TypeVar("R")
TaskFunction = Callable[[dict[str, Any]], Awaitable[Any]]

TASKS: dict[str, TaskFunction] = {}
"""Every declared task by name, filled when the TARGET module is imported."""


class StepFailed(Exception):
    """A step's error that could not be checkpointed as itself (it does not pickle)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def task(name: str) -> Callable[[TaskFunction], TaskFunction]:
    """Declare `name` as a task: `POST /v1/tasks/{name}` runs the function with the body's `input`."""

    def register(fn: TaskFunction) -> TaskFunction:
        TASKS[name] = fn
        return fn

    return register


@overload
def step(fn: Callable[P, Awaitable[R]], /) -> Callable[P, Awaitable[R]]: ...
@overload
def step(
    *, retries: int = 3, backoff_s: float = 1.0, name: str | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]: ...
def step(
    fn: Callable[P, Awaitable[R]] | None = None, /, *, retries: int = 3, backoff_s: float = 1.0, name: str | None = None
) -> Any:
    """Make an async function a task step: checkpointed, and retried `retries` times with
    exponential backoff (`backoff_s`, then twice that, ...) before it fails the task."""

    def wrap(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        step_name = name or func.__name__

        @functools.wraps(func)
        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            context = CURRENT.get()
            if context is None:
                return await func(*args, **kwargs)
            from dbos import DBOS

            tally, outer, executed = Tally(), current_tally(), False

            async def attempt(*args: P.args, **kwargs: P.kwargs) -> tuple[R, Tally]:
                nonlocal executed
                executed = True
                try:
                    with tally_scope(tally):
                        return await func(*args, **kwargs), tally
                except Exception as exc:
                    raise _portable(exc) from exc

            options: Any = {
                "name": step_name,
                "retries_allowed": retries > 0,
                "max_attempts": retries + 1,
                "interval_seconds": backoff_s,
                "backoff_rate": 2.0,
                "should_retry": _retryable,
            }
            result, recorded = await DBOS.run_step_async(options, attempt, *args, **kwargs)
            if not executed:
                context.replay(recorded)
            elif outer is not None:  # a step inside a step: the outer step's checkpoint carries it
                outer.add(recorded.usage, recorded.tools)
            return result

        return call

    return wrap(fn) if fn is not None else wrap


async def ask(agent: Agent[Any, Any], prompt: str) -> str:
    """Run `agent` on `prompt` and return its output as text, on the model the server would use
    for it (AGENTKEEP_MODEL's override, or the built-in model for an agent without one).

    Inside a task the call is part of the task's run: budgeted, metered, retried and recorded like
    any run's model requests. Outside one (a test, a script) it is a plain `agent.run`."""
    context = CURRENT.get()
    if context is None:
        result = await agent.run(prompt, model=resolve_model(None, agent))
    else:
        result = await context.ask(agent, prompt)
    output = result.output
    return output if isinstance(output, str) else json.dumps(output, default=str)


def _retryable(exc: BaseException) -> bool:
    """A budget refusal fails the step at once: trying again would only be refused again."""
    return not isinstance(exc, BudgetExceeded | PriceUnknown)


def _portable(exc: Exception) -> Exception:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 — our own bytes, just made
    except Exception:
        return StepFailed(f"{type(exc).__name__}: {exc}")
    return exc


# --- the engine's side ---


def new_task_run(name: str, task_input: dict[str, Any], user_id: str, webhook_url: str | None) -> RunRecord:
    """The record of a submitted task; `NotFound` for an unknown name."""
    if name not in TASKS:
        known = ", ".join(sorted(TASKS)) or "none"
        raise NotFound(f"no task named {name!r}; this server has: {known}")
    return RunRecord(
        run_id=new_id("run"),
        session_id=new_id("ses"),
        user_id=user_id,
        agent=f"task:{name}",
        status=RunStatus.QUEUED,
        input=json.dumps(task_input, separators=(",", ":")),
        created_at=time.time(),
        metadata={"task": name},
        background=True,
        webhook_url=webhook_url,
    )


@dataclass
class TaskRunner:
    """Executes task runs for `engine`: the body of workflow `agentkeep.task`."""

    engine: DurableEngine

    async def execute(self, run_id: str, user_id: str) -> str:
        from dbos import DBOS

        from agentkeep.durable.steps import DurableSteps

        runtime = self.engine.runtime
        record = await runtime.store.get_run(user_id, run_id)
        if record is None or record.status.finished:
            return record.status.value if record else "missing"
        started_now = False

        async def run_started() -> float | None:
            nonlocal started_now
            started_now = True
            return await self.engine.runs.start(record)

        started_at = await DBOS.run_step_async({"name": "run_started"}, run_started)
        if started_at is None:
            return RunStatus.CANCELLED.value
        record.status, record.started_at = RunStatus.RUNNING, started_at
        state = RunState(record.run_id, record.session_id, record.user_id, record.agent, background=True)
        context = TaskContext(runtime, state, [DurableSteps(), *runtime.hooks])
        outcome = RunOutcome(RunStatus.INTERRUPTED.value, "interrupted")  # unless it ends below
        token = CURRENT.set(context)
        try:
            outcome = await self._run(context, record, resumed=not started_now)
            record.finished_at = time.time()
            record.duration_ms = (record.finished_at - started_at) * 1000
            record.usage, record.cost_usd, record.tools_used = state.usage, state.cost_usd, list(state.tools_used)
            await runtime.store.finish_run(record, append_to_session=None)
        finally:
            CURRENT.reset(token)
            await context.after_run(outcome)
        return record.status.value

    async def _run(self, context: TaskContext, record: RunRecord, *, resumed: bool) -> RunOutcome:
        """Run the task's function; set `record`'s outcome from how it ended."""
        fn = TASKS.get(record.metadata.get("task", ""))
        try:
            await context.before_run(resumed=resumed)
            if fn is None:
                raise RunFailed("internal_error", f"task {record.metadata.get('task')!r} is not declared here")
            output = await fn(json.loads(record.input))
        except (Exception, CancelRequested) as exc:
            failure = ("cancelled", "the run was cancelled") if isinstance(exc, CancelRequested) else _failure(exc)
            record.error_type, record.error_message = failure
            record.status = RunStatus.CANCELLED if isinstance(exc, CancelRequested) else RunStatus.FAILED
            return RunOutcome(record.status.value, record.error_type, exc)
        record.status = RunStatus.SUCCEEDED
        record.output = output if isinstance(output, str) else json.dumps(output, default=str)
        return RunOutcome(RunStatus.SUCCEEDED.value)


def _failure(exc: Exception) -> tuple[str, str]:
    """(error type, message) of a failed task: a step's own error, named after the step."""
    from dbos._error import DBOSMaxStepRetriesExceeded

    if isinstance(exc, DBOSMaxStepRetriesExceeded):
        last = exc.errors[-1] if exc.errors else exc
        known = classify(last)
        error_type = known.error_type if known.error_type != "internal_error" else "tool_error"
        message = f"step {exc.step_name!r} failed after {exc.max_retries} attempts: {_describe(last)}"
        return error_type, message
    known = classify(exc)
    if known.error_type == "internal_error":
        return "tool_error", f"the task failed: {_describe(exc)}"
    return known.error_type, known.message


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StepFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
