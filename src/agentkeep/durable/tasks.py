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
records what its agent calls used and cost, and its budget caps them. The task's run itself is
executed by `runner.py`, in the runtime's run scope like any run.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload

from pydantic_ai import Agent

from agentkeep.durable.asking import CURRENT, Tally, current_tally, tally_scope
from agentkeep.errors import BudgetExceeded, NotFound, PriceUnknown, RunFailed
from agentkeep.failures import CancelRequested, classify
from agentkeep.models import resolve_model
from agentkeep.runtime import Runtime
from agentkeep.stores.base import RunRecord

__all__ = ["TASKS", "StepFailed", "TaskFunction", "ask", "step", "task", "task_failure", "task_record"]

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


# --- the runner's side ---


def task_record(
    runtime: Runtime,
    name: str,
    task_input: dict[str, Any],
    user_id: str,
    webhook_url: str | None,
    *,
    run_id: str | None = None,
) -> RunRecord:
    """The record of a submitted task, on a session of its own; `NotFound` for an unknown name."""
    if name not in TASKS:
        known = ", ".join(sorted(TASKS)) or "none"
        raise NotFound(f"no task named {name!r}; this server has: {known}")
    return runtime.new_record(
        agent=f"task:{name}",
        input=json.dumps(task_input, separators=(",", ":")),
        user_id=user_id,
        background=True,
        run_id=run_id,
        metadata={"task": name},
        webhook_url=webhook_url,
    )


def task_failure(exc: Exception | CancelRequested) -> RunFailed:
    """How a failed task is recorded: cancelled on request, else a step's own error, named after the step."""
    from dbos import error as dbos_error

    if isinstance(exc, CancelRequested):
        return classify(exc)
    if isinstance(exc, dbos_error.DBOSMaxStepRetriesExceeded):
        last = exc.errors[-1] if exc.errors else exc
        known = classify(last)
        error_type = known.error_type if known.error_type != "internal_error" else "tool_error"
        message = f"step {exc.step_name!r} failed after {exc.max_retries} attempts: {_describe(last)}"
        return RunFailed(error_type, message)
    known = classify(exc)
    if known.error_type == "internal_error":
        return RunFailed("tool_error", f"the task failed: {_describe(exc)}")
    return RunFailed(known.error_type, known.message)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StepFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
