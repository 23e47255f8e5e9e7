"""What a process that executes background runs does besides executing them.

One pass every RECOVERY_S/6, on the `WorkerLoop` (exponential backoff while a pass keeps failing,
drained at shutdown):

    takeover    heartbeat; resume the runs of workers whose heartbeat went stale (takeover.py)
    retention   every hour (or sooner for a short retention): delete runs that finished more than
                AGENTKEEP_RUN_RETENTION_DAYS ago, and DBOS's record and checkpoints of every
                workflow that completed before then, so neither database grows without bound;
                and the workspace folders of sessions not active since then (`FileSweep`)
    schedules   start the runs that agentkeep.toml's schedules make due (schedules.py)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import anyio.to_thread
import structlog

from agentkeep.config import Settings
from agentkeep.durable.takeover import Takeover
from agentkeep.stores.sql import SQLStore
from agentkeep.tools import ToolFailure
from agentkeep.tools.files import workspace_root
from agentkeep.tools.sweep import scope_folders, stale_folders

__all__ = ["FileSweep", "Upkeep", "prune_workflows"]

log = structlog.get_logger("agentkeep.durable")

_PRUNE_EVERY_S = 3600.0
_PRUNE_BATCH = 500
_DONE = ["SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"]

Pass = Callable[[], Awaitable[None]]


class Upkeep:
    """One pass of the upkeep; `step` is the `WorkerLoop`'s step."""

    def __init__(
        self,
        takeover: Takeover,
        store: SQLStore,
        retention_days: float,
        extra: list[Pass] | None = None,
        files: FileSweep | None = None,
    ) -> None:
        self.takeover = takeover
        self.store = store
        self.retention_s = retention_days * 86400
        self.extra = extra or []
        self.files = files
        self._next_prune = 0.0

    async def step(self) -> bool:
        """Run one pass; False, so the loop waits a pass interval before the next."""
        await self.takeover.run_once()
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + min(_PRUNE_EVERY_S, self.retention_s)
            await self.prune()
        for work in self.extra:
            await work()
        return False

    async def prune(self) -> tuple[int, int]:
        """Delete what finished before the retention period; returns (runs, workflows) deleted."""
        cutoff = time.time() - self.retention_s
        runs = workflows = 0
        while len(batch := await self.store.prune_runs(cutoff, limit=_PRUNE_BATCH)) > 0:
            runs += len(batch)
        while (deleted := await prune_workflows(cutoff)) > 0:
            workflows += deleted
        if self.files is not None:
            await self.files.sweep(cutoff)
        if runs or workflows:
            log.info("durable.pruned", runs=runs, workflows=workflows, retention_days=self.retention_s / 86400)
        return runs, workflows


class FileSweep:
    """Retention for the workspace (`tools.sweep`): the folders of sessions not active since the cutoff."""

    def __init__(self, settings: Settings, store: SQLStore) -> None:
        self.settings = settings
        self.store = store

    async def sweep(self, cutoff: float) -> int:
        """Remove the stale folders; returns how many. A failing storage is logged and tried next pass."""
        scope = self.settings.workspace_scope
        if scope == "shared":
            return 0
        root = workspace_root(self.settings)
        try:
            folders = await anyio.to_thread.run_sync(scope_folders, root, scope)
            if not folders:
                return 0
            stale = stale_folders(folders, scope, await self.store.active_sessions(cutoff))
            for folder in stale:
                await anyio.to_thread.run_sync(root.scoped(folder).remove)
        except ToolFailure as exc:
            log.warning("durable.files_sweep_failed", reason=exc.message)
            return 0
        if stale:
            log.info("durable.files_swept", folders=len(stale), scope=scope)
        return len(stale)


async def prune_workflows(cutoff: float, limit: int = _PRUNE_BATCH) -> int:
    """Delete up to `limit` DBOS workflows that completed before `cutoff`, with their checkpoints."""
    from dbos import DBOS

    before = datetime.fromtimestamp(cutoff, UTC).isoformat()
    done = await DBOS.list_workflows_async(
        status=_DONE, completed_before=before, limit=limit, load_input=False, load_output=False
    )
    ids = [workflow.workflow_id for workflow in done]
    if ids:
        await DBOS.delete_workflows_async(ids)
    return len(ids)
