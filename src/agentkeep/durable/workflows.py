"""The DBOS workflows agentkeep registers. Importing this module imports dbos (the engine does it).

Registered at import, before `DBOS.launch()`, as recovery requires; each delegates to the process's
`DurableEngine`. Only serialisable ids cross the durable boundary: the rest is read from the store.
"""

from __future__ import annotations

from datetime import datetime

from dbos import DBOS
from dbos._error import DBOSWorkflowCancelledError

from agentkeep.durable.engine import DurableEngine
from agentkeep.durable.steps import workflow_status

__all__ = ["bind", "run_workflow", "scheduled_workflow", "task_workflow", "webhook_workflow"]

_engine: DurableEngine | None = None

# A run whose process keeps dying mid-run (out of memory, say) stops being resumed after this many tries.
MAX_RECOVERY_ATTEMPTS = 20


def bind(engine: DurableEngine) -> None:
    """Make `engine` the one these workflows run on (DBOS, and so the engine, is one per process)."""
    global _engine
    _engine = engine


def _bound() -> DurableEngine:
    if _engine is None:
        raise RuntimeError("no durable engine is bound in this process")
    return _engine


@DBOS.workflow(name="agentkeep.run", max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def run_workflow(run_id: str, user_id: str) -> str:
    """One background run: its model requests and tool calls are the steps."""
    status = await _bound().execute(run_id, user_id)
    if status == "cancelled" and await workflow_status(DBOS.workflow_id or run_id) == "CANCELLED":
        # DBOS has the outcome already: tell it so, rather than return a result it cannot record.
        raise DBOSWorkflowCancelledError(f"run {run_id} was cancelled")
    await _bound().notify(run_id, user_id)
    return status


@DBOS.workflow(name="agentkeep.task", max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def task_workflow(run_id: str, user_id: str) -> str:
    """One run of a multi-step task (`agentkeep.durable.tasks`): each `@step` call is a step."""
    status = await _bound().tasks.execute(run_id, user_id)
    await _bound().notify(run_id, user_id)
    return status


@DBOS.workflow(name="agentkeep.webhook", max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def webhook_workflow(run_id: str, user_id: str) -> int:
    """A finished run's completion webhook, delivered with retries."""
    return await _bound().deliver_webhook(run_id, user_id)


@DBOS.workflow(name="agentkeep.scheduled")
async def scheduled_workflow(scheduled_at: datetime, name: str) -> str:
    """One tick of schedule `name`: records and queues its run (started by DBOS's scheduler)."""
    return await _bound().scheduler.fire(name, scheduled_at)
