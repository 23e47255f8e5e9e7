"""Runs left unfinished by another version of the code, and resuming them on this one.

DBOS resumes a run only on the application version that started it (`setup.py`: agentkeep's version
plus a hash of the TARGET file), because a changed agent could replay its checkpoints differently.
So after a redeploy that changed the agent, runs that were in flight stay unfinished, neither lost
nor resumed, until an operator decides:

    agentkeep runs resume TARGET [RUN_ID ...]    every such run (or these) continues on this version
    POST /v1/runs/{run_id}/cancel                 or cancel it

Resuming forks the run's workflow at its first unfinished step onto this version (the new
workflow id is `RUN_ID~XXXXXX`; the run id does not change): the finished steps are replayed from
their checkpoints under the new code, so a change that reorders or renames tool calls fails the
run (`internal_error`) rather than doing anything twice.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import structlog

from agentkeep.config import Settings
from agentkeep.durable.setup import QUEUE, Identity, dbos_config, route_dbos_logs

__all__ = ["fork_suffix", "resume", "resume_stale_runs", "run_id_of", "stale"]

log = structlog.get_logger("agentkeep.durable")

_RUN_WORKFLOWS = ["agentkeep.run", "agentkeep.task"]
_UNFINISHED = ["PENDING", "ENQUEUED"]


def run_id_of(workflow_id: str) -> str:
    """The run a workflow executes: its id, or the id it was forked from."""
    return workflow_id.split("~", 1)[0]


def fork_suffix() -> str:
    return f"~{secrets.token_hex(3)}"


async def stale(version: str, run_ids: set[str] | None = None) -> list[Any]:
    """Unfinished runs of other versions (only `run_ids`, when given)."""
    from dbos import DBOS

    found = await DBOS.list_workflows_async(
        status=_UNFINISHED, name=_RUN_WORKFLOWS, load_input=False, load_output=False
    )
    return [
        wf for wf in found if wf.app_version != version and (run_ids is None or run_id_of(wf.workflow_id) in run_ids)
    ]


async def resume(version: str, run_ids: set[str] | None = None) -> list[tuple[str, str, str]]:
    """Fork every stale run onto `version`; returns (run id, its old version, the new workflow id)."""
    from dbos import DBOS, SetWorkflowID

    resumed = []
    for wf in await stale(version, run_ids):
        steps = await DBOS.list_workflow_steps_async(wf.workflow_id)
        start = max((step["function_id"] for step in steps), default=0) + 1
        run_id = run_id_of(wf.workflow_id)
        new_id = run_id + fork_suffix()
        await DBOS.cancel_workflow_async(wf.workflow_id)
        with SetWorkflowID(new_id):
            await DBOS.fork_workflow_async(
                wf.workflow_id,
                start,
                application_version=version,
                queue_name=QUEUE,
                queue_partition_key=wf.queue_partition_key,
            )
        log.info("durable.resumed_on_new_version", run_id=run_id, old_version=wf.app_version, workflow_id=new_id)
        resumed.append((run_id, str(wf.app_version), new_id))
    return resumed


def resume_stale_runs(settings: Settings, me: Identity, run_ids: set[str] | None) -> list[tuple[str, str, str]]:
    """`agentkeep runs resume`: launch DBOS here without taking any work, fork, shut down."""
    from dbos import DBOS

    from agentkeep.durable import workflows  # noqa: F401 — registers the workflows a fork names

    async def run() -> list[tuple[str, str, str]]:
        route_dbos_logs()
        DBOS(config=dbos_config(settings, me))  # type: ignore[arg-type]  # a DBOSConfig
        DBOS.listen_queues([])
        DBOS.launch()
        try:
            return await resume(me.version, run_ids)
        finally:
            await asyncio.to_thread(DBOS.destroy, workflow_completion_timeout_sec=0)

    return asyncio.run(run())
