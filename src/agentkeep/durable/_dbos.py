"""Every use of DBOS beyond its public API, in one module, each with why. Checked against dbos 3.4.0.

Pydantic AI's own DBOS integration needs only the public `DBOS` class; agentkeep needs five things
DBOS 3.4 offers no public way to do. When the pin (pyproject: `dbos>=3.4,<3.5`) moves, check each
against the new version; `tests/durable` and `tests/serverless/test_worker_e2e.py` exercise them all.

    stop_dequeuing()        a draining process stops taking queued runs, keeps running its own
    active_workflows()      how many workflows execute in this process (a time box's "is it idle")
    read_status()           a workflow's status read from inside a workflow, not as a step
    recover_executor()      re-queue a dead executor's unfinished workflows (takeover)
    intercept_steps()       every step of every workflow passes through a gate (a time box)

The error classes are public (`dbos.error`, the module `dbos._error` exported under that name) and
are imported from there, not through here. Importing this module imports dbos: only code that runs
once the engine has started does it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from dbos import DBOS

__all__ = [
    "StepCall",
    "StepGate",
    "active_workflows",
    "intercept_steps",
    "read_status",
    "recover_executor",
    "stop_dequeuing",
]

StepCall = Callable[..., Awaitable[Any]]
"""`DBOS.run_step_async` as a plain function: (options, func, *args, **kwargs) → the step's result."""
StepGate = Callable[[StepCall, Any, Any, tuple[Any, ...], dict[str, Any]], Awaitable[Any]]
"""What `intercept_steps` routes each step through: (run_step, options, func, args, kwargs)."""


def stop_dequeuing() -> None:
    """Stop DBOS's background threads (the queue poller, the scheduler), leaving the workflows
    already executing to finish.

    Why private: DBOS 3.4 has `listen_queues([])` only before `launch()`, and `destroy()` also
    abandons the workflows in flight. `DBOS._destroy` does exactly this first; the events are the
    instance's `background_thread_stop_events`, reached through `dbos._dbos._get_dbos_instance`.
    """
    from dbos._dbos import _get_dbos_instance

    for stop in _get_dbos_instance().background_thread_stop_events:
        stop.set()


def active_workflows() -> int:
    """How many workflows execute in this process now.

    Why private: DBOS 3.4 counts them in `DBOS._active_workflows_set` (what `destroy()` waits on)
    and has no public accessor; `list_workflows(status=PENDING, executor_id=…)` would also count
    this executor's workflows that are pending but not executing (left for recovery).
    """
    from dbos._dbos import _get_dbos_instance

    return len(_get_dbos_instance()._active_workflows_set.activeList())


def read_status(workflow_id: str) -> str | None:
    """DBOS's status of a workflow (PENDING, CANCELLED, ...), or None; blocking (call it on a thread).

    Why private: inside a workflow the public `DBOS.get_workflow_status` is itself a step, which a
    workflow this execution no longer owns (cancelled, taken over) cannot record. This is what
    that step runs: `dbos._workflow_commands.get_workflow` on the instance's `_sys_db`.
    """
    from dbos._dbos import _get_dbos_instance
    from dbos._workflow_commands import get_workflow

    status = get_workflow(_get_dbos_instance()._sys_db, workflow_id, load_input=False, load_output=False)
    return None if status is None else str(status.status)


def recover_executor(executor_id: str) -> list[str]:
    """Put the unfinished workflows of `executor_id` (a dead process) back to work; their ids.
    Blocking (call it on a thread).

    Why private: DBOS 3.4 recovers another executor's workflows only through its paid Conductor;
    `DBOS._recover_pending_workflows` is what `launch()` runs for this process's own id.
    """
    handles = DBOS._recover_pending_workflows([executor_id])
    return [handle.workflow_id for handle in handles]


@contextlib.contextmanager
def intercept_steps(
    gate: Callable[[StepCall, Any, Any, tuple[Any, ...], dict[str, Any]], Awaitable[Any]],
) -> Iterator[None]:
    """Until the block ends, every `DBOS.run_step_async` call goes through
    `gate(original, options, func, args, kwargs)`, which calls `original` to run the step.

    Why: DBOS 3.4 has no hook before a step starts, and a time box must refuse new steps once its
    time is up (`deadline.py`). Every step of agentkeep's workflows is a `DBOS.run_step_async` call
    (checkpoints.py, tasks.py, runner.py), so replacing that public classmethod for the block is
    enough; the original is put back however the block ends.
    """
    original: Any = DBOS.__dict__["run_step_async"]

    async def run_step_async(cls: type[DBOS], options: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        async def call(options: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
            return await original.__func__(cls, options, func, *args, **kwargs)

        return await gate(call, options, func, args, kwargs)

    DBOS.run_step_async = classmethod(run_step_async)  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        DBOS.run_step_async = original  # type: ignore[method-assign]
