"""The durable engine's worker heartbeats, in `agentkeep_workers`: one row per executor.

`durable.takeover` decides when a worker is dead and what to do with its runs; these are its
statements, each conditional, so of two live workers racing for a dead one only one wins:

    beat()          upsert this executor's heartbeat, and drop any claim on it: it is back
    claim_stale()   claim each executor of this version whose heartbeat is older than a cutoff,
                    unless another live worker holds an unexpired claim on it
    retire()        at shutdown: a heartbeat of 0, so the next pass anywhere takes its runs over
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from agentkeep.stores.database import Database
from agentkeep.stores.schema import workers

__all__ = ["Workers"]

_w = workers.c


class Workers:
    """Heartbeats and claims of the processes that execute background runs."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def beat(self, executor_id: str, version: str) -> None:
        """Record that `executor_id` (running `version`) is alive now."""
        values = {"app_version": version, "heartbeat_at": time.time(), "claimed_by": None, "claimed_at": None}
        async with self.database.writer() as conn:
            updated = await conn.execute(workers.update().where(_w.executor_id == executor_id).values(**values))
            if updated.rowcount == 0:
                await conn.execute(workers.insert().values(executor_id=executor_id, **values))

    async def claim_stale(
        self, claimer: str, version: str, *, stale_before: float, claims_expire_before: float
    ) -> list[str]:
        """The executors of `version` whose heartbeat is older than `stale_before` that `claimer` now
        holds: each unclaimed, or claimed before `claims_expire_before` (that claimer died too)."""
        async with self.database.reader() as conn:
            candidates = list(
                (
                    await conn.execute(
                        sa.select(_w.executor_id).where(
                            _w.executor_id != claimer, _w.app_version == version, _w.heartbeat_at < stale_before
                        )
                    )
                ).scalars()
            )
        claimed: list[str] = []
        for dead in candidates:
            async with self.database.writer() as conn:
                won = await conn.execute(
                    workers.update()
                    .where(_w.executor_id == dead, _w.heartbeat_at < stale_before)
                    .where(sa.or_(_w.claimed_by.is_(None), _w.claimed_at < claims_expire_before))
                    .values(claimed_by=claimer, claimed_at=time.time())
                )
            if won.rowcount == 1:
                claimed.append(dead)
        return claimed

    async def retire(self, executor_id: str) -> None:
        """Make `executor_id` look dead at once."""
        async with self.database.writer() as conn:
            await conn.execute(workers.update().where(_w.executor_id == executor_id).values(heartbeat_at=0.0))
