"""Takeover: a dead worker's runs are resumed by a live one within AGENTKEEP_RECOVERY_S.

DBOS resumes an executor's unfinished runs when that executor restarts (same executor id); without
DBOS's paid Conductor nobody resumes them when it never comes back. So every process that executes
background runs, every RECOVERY_S/6:

    1. upserts its heartbeat in `agentkeep_workers` (and drops any claim on itself: it is back;
       the statements are `stores.workers`')
    2. looks for executors of its own version whose heartbeat is older than RECOVERY_S/2
    3. claims each with one conditional UPDATE, a lease: of two live workers only one wins, and a
       claim older than RECOVERY_S expires, so a claimer that dies is itself replaced
    4. asks DBOS to recover the claimed executor's unfinished runs: they go back on the queue, where
       any worker takes them; each finished step is replayed, not executed again

A run is re-queued only while still owned by the dead executor, and a dequeue is an atomic claim,
so a second recovery of the same executor finds nothing. Worst case: RECOVERY_S/2 (stale) +
RECOVERY_S/6 (next pass) + a queue poll, within RECOVERY_S.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from agentkeep.durable.setup import Identity
from agentkeep.stores.database import Database
from agentkeep.stores.workers import Workers

__all__ = ["Takeover"]

log = structlog.get_logger("agentkeep.durable")


class Takeover:
    """Heartbeats for this executor, and the claim of dead executors' runs."""

    def __init__(self, store: Database, me: Identity, recovery_s: float) -> None:
        self.workers = Workers(store)
        self.me = me
        self.recovery_s = recovery_s

    @property
    def interval_s(self) -> float:
        """Time between two passes."""
        return self.recovery_s / 6

    async def run_once(self) -> list[str]:
        """One pass: heartbeat, then claim and recover stale executors; returns the runs taken over."""
        await self.beat()
        recovered: list[str] = []
        for dead in await self.claim_stale():
            from agentkeep.durable._dbos import recover_executor

            ids = await asyncio.to_thread(recover_executor, dead)
            log.warning("durable.takeover", dead_executor=dead, runs=ids)
            recovered += ids
        return recovered

    async def beat(self) -> None:
        await self.workers.beat(self.me.executor_id, self.me.version)

    async def claim_stale(self) -> list[str]:
        """The executors whose runs this one now owns the duty to recover."""
        now = time.time()
        return await self.workers.claim_stale(
            self.me.executor_id,
            self.me.version,
            stale_before=now - self.recovery_s / 2,
            claims_expire_before=now - self.recovery_s,
        )

    async def retire(self) -> None:
        """At shutdown: look dead at once, so any run left unfinished here is taken over at the next pass."""
        await self.workers.retire(self.me.executor_id)
