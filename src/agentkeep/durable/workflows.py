"""The DBOS workflows agentkeep registers. Importing this module imports dbos (the engine does it).

Registered at import, before `DBOS.launch()`, as recovery requires. DBOS calls a workflow with its
arguments only, and only serialisable ids cross the durable boundary; what executes each workflow
is looked up in `REGISTRY`, where the process's engine puts its `WorkflowBodies` when it starts
(DBOS, and so the engine, is one per process). This module imports none of them:

    agentkeep.run        WorkflowBodies.resume_run       runner.py: a background agent run
    agentkeep.task       WorkflowBodies.run_task         runner.py: a multi-step task
    agentkeep.webhook    WorkflowBodies.deliver_webhook  engine.py: a finished run's webhook
    agentkeep.scheduled  WorkflowBodies.fire_schedule    schedules.py: one tick of a schedule
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from dbos import DBOS
from dbos import error as dbos_error

from agentkeep.durable.checkpoints import workflow_status

__all__ = [
    "REGISTRY",
    "Registry",
    "WorkflowBodies",
    "run_workflow",
    "scheduled_workflow",
    "task_workflow",
    "webhook_workflow",
]

# A run whose process keeps dying mid-run (out of memory, say) stops being resumed after this many tries.
MAX_RECOVERY_ATTEMPTS = 20

RunBody = Callable[[str, str], Awaitable[str]]  # (run_id, user_id) → the run's final status


@dataclass(frozen=True)
class WorkflowBodies:
    """What this process executes for each workflow; `notify` starts a finished run's webhook."""

    resume_run: RunBody
    run_task: RunBody
    deliver_webhook: Callable[[str, str], Awaitable[int]]
    fire_schedule: Callable[[str, datetime], Awaitable[str]]
    notify: Callable[[str, str], Awaitable[None]]


class Registry:
    """Holds the process's `WorkflowBodies` from `DurableEngine.start()` on."""

    def __init__(self) -> None:
        self._bodies: WorkflowBodies | None = None

    def register(self, bodies: WorkflowBodies) -> None:
        self._bodies = bodies

    @property
    def bodies(self) -> WorkflowBodies:
        if self._bodies is None:
            raise RuntimeError("no durable engine has started in this process")
        return self._bodies


REGISTRY = Registry()


@DBOS.workflow(name="agentkeep.run", max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def run_workflow(run_id: str, user_id: str) -> str:
    """One background run: its model requests and tool calls are the steps."""
    bodies = REGISTRY.bodies
    status = await bodies.resume_run(run_id, user_id)
    if status == "cancelled" and await workflow_status(DBOS.workflow_id or run_id) == "CANCELLED":
        # DBOS has the outcome already: tell it so, rather than return a result it cannot record.
        raise dbos_error.DBOSWorkflowCancelledError(f"run {run_id} was cancelled")
    await bodies.notify(run_id, user_id)
    return status


@DBOS.workflow(name="agentkeep.task", max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def task_workflow(run_id: str, user_id: str) -> str:
    """One run of a multi-step task (`agentkeep.durable.tasks`): each `@step` call is a step."""
    bodies = REGISTRY.bodies
    status = await bodies.run_task(run_id, user_id)
    await bodies.notify(run_id, user_id)
    return status


@DBOS.workflow(name="agentkeep.webhook", max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def webhook_workflow(run_id: str, user_id: str) -> int:
    """A finished run's completion webhook, delivered with retries."""
    return await REGISTRY.bodies.deliver_webhook(run_id, user_id)


@DBOS.workflow(name="agentkeep.scheduled")
async def scheduled_workflow(scheduled_at: datetime, name: str) -> str:
    """One tick of schedule `name`: records and queues its run (started by DBOS's scheduler)."""
    return await REGISTRY.bodies.fire_schedule(name, scheduled_at)
