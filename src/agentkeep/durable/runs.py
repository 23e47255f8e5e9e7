"""The durable engine's writes to agentkeep's own tables, beyond what the `Store` API offers.

    start()    queued → running, unless it finished meanwhile (a cancel may have come first)
    claim()    a background run takes (or keeps) its session when it starts executing: its lease
               from `POST /v1/runs` may have run out while it waited in the queue
    cancel()   recorded `cancelled`, session freed, unless the run finished first
    prune()    finished runs older than the retention period are deleted

Every statement is conditional, so two processes racing on the same run cannot both win.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from agentkeep.stores import schema
from agentkeep.stores.base import RunRecord, RunStatus
from agentkeep.stores.sql import SQLStore

__all__ = ["RunBook"]

_FINISHED = [status.value for status in RunStatus if status.finished]


class RunBook:
    """Session claims, cancellations and pruning for background runs, in the store's database."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store

    async def claim(self, record: RunRecord, lease_s: float) -> list[bytes] | None:
        """Make `record` its session's writer for `lease_s` more seconds; return the session's history.

        None while another run holds an unexpired lease on the session.
        """
        s, h = schema.sessions, schema.session_history
        now = time.time()
        owner = (s.c.user_id == record.user_id, s.c.session_id == record.session_id)
        async with self.store.writer() as conn:
            exists = (await conn.execute(sa.select(s.c.session_id).where(*owner))).first()
            if exists is None:  # deleted while the run's lease had lapsed
                await conn.execute(
                    s.insert().values(
                        user_id=record.user_id, session_id=record.session_id, created_at=now, updated_at=now
                    )
                )
            claimed = await conn.execute(
                s.update()
                .where(*owner)
                .where(sa.or_(s.c.busy_run_id == record.run_id, s.c.busy_run_id.is_(None), s.c.busy_until < now))
                .values(busy_run_id=record.run_id, busy_until=now + lease_s)
            )
            if claimed.rowcount != 1:
                return None
            rows = await conn.execute(
                sa.select(h.c.messages)
                .where(h.c.user_id == record.user_id, h.c.session_id == record.session_id)
                .order_by(h.c.seq)
            )
            return [bytes(r) for r in rows.scalars()]

    async def start(self, record: RunRecord) -> float | None:
        """Mark a queued run running; return when it started, or None once it has finished (a cancel
        came first). A run already running (its process died right after this) keeps its start time."""
        r = schema.runs
        async with self.store.writer() as conn:
            started = await conn.execute(
                r.update()
                .where(r.c.run_id == record.run_id)
                .where(r.c.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]))
                .values(status=RunStatus.RUNNING.value, started_at=sa.func.coalesce(r.c.started_at, time.time()))
            )
            if started.rowcount != 1:
                return None
            when: float = (
                await conn.execute(sa.select(r.c.started_at).where(r.c.run_id == record.run_id))
            ).scalar_one()
            return when

    async def cancel(self, record: RunRecord, *, only_queued: bool) -> bool:
        """Record an unfinished run (only a queued one, if `only_queued`) as `cancelled` and free its
        session; False when it was already past that."""
        r, s = schema.runs, schema.sessions
        now = time.time()
        statuses = [RunStatus.QUEUED.value] if only_queued else [RunStatus.QUEUED.value, RunStatus.RUNNING.value]
        async with self.store.writer() as conn:
            cancelled = await conn.execute(
                r.update()
                .where(r.c.run_id == record.run_id, r.c.status.in_(statuses))
                .values(
                    status=RunStatus.CANCELLED.value,
                    error_type="cancelled",
                    error_message="the run was cancelled",
                    finished_at=now,
                )
            )
            if cancelled.rowcount != 1:
                return False
            await conn.execute(
                s.update()
                .where(s.c.user_id == record.user_id, s.c.session_id == record.session_id)
                .where(s.c.busy_run_id == record.run_id)
                .values(busy_run_id=None, busy_until=None, updated_at=now)
            )
            return True

    async def prune(self, before: float, *, limit: int = 500) -> list[str]:
        """Delete up to `limit` runs that finished before `before` (UNIX seconds); return their ids."""
        r = schema.runs
        async with self.store.writer() as conn:
            ids = list(
                (
                    await conn.execute(
                        sa.select(r.c.run_id)
                        .where(r.c.status.in_(_FINISHED), r.c.finished_at < before)
                        .order_by(r.c.finished_at)
                        .limit(limit)
                    )
                ).scalars()
            )
            if ids:
                await conn.execute(r.delete().where(r.c.run_id.in_(ids)))
        return ids
