"""The store of sessions and runs, on SQLAlchemy Core: every statement on their tables is here.

SQLite runs in WAL mode with `BEGIN IMMEDIATE` for writes, so two processes sharing the file
serialise their writes instead of failing on a lock upgrade; PostgreSQL relies on row locks and
conditional updates. The same statements serve both (`Database` runs them), and every write to a
run or a session is conditional, so two processes racing on the same run or session cannot both win:

    start_run()       a new run takes its session, unless another run holds an unexpired lease
    claim_session()   a queued run takes (or keeps) its session when it starts executing: its
                      lease from `POST /v1/runs` may have run out while it waited in the queue
    mark_running()    queued → running, unless it finished meanwhile (a cancel may have come first)
    finish_run()      its outcome, once: only a run not yet finished is written
    (waiting)         a run paused for a tool decision, resumed or closed: `stores.waiting`, a base
    cancel_run()      recorded `cancelled`, session freed, unless the run finished first
    prune_runs()      finished runs older than the retention period are deleted

The other tables' statements live beside this module: API keys in `keys`, the durable engine's
worker heartbeats in `workers`, the read-only reports in `reports`; how a run is a row is `rows`,
how a run's end writes its session is `history`.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agentkeep.errors import ApprovalPending, SessionBusy
from agentkeep.sqlite import precompiled
from agentkeep.stores import reports, schema
from agentkeep.stores.base import HourUsage, RunQuery, RunRecord, RunStatus, SessionRecord
from agentkeep.stores.history import read_history, release_session
from agentkeep.stores.rows import run_from_row, run_row
from agentkeep.stores.waiting import WaitingRuns

__all__ = ["SQLStore"]
# A run's outcome is written once: only a run still in one of these may be moved to a final status.
_UNFINISHED = [status.value for status in RunStatus if not status.finished]
_FINISHED = [status.value for status in RunStatus if status.finished]

# A run's statements, built once with every value a parameter (named `b_…` where a column's own name
# is taken by the SET clause): cheap for SQLAlchemy to cache, and run directly on SQLite's driver.
_s, _r = schema.sessions, schema.runs
_SESSION = (_s.c.user_id == sa.bindparam("b_user_id"), _s.c.session_id == sa.bindparam("b_session_id"))
_FREE = (_s.c.busy_run_id.is_(None), _s.c.busy_until < sa.bindparam("b_now"))
_TAKE: dict[str, Any] = {"busy_run_id": sa.bindparam("b_run_id"), "busy_until": sa.bindparam("b_until")}
# A new run takes a free session; a queued run starting may also renew the lease it already holds.
_CLAIM = precompiled(_s.update().where(*_SESSION, sa.or_(*_FREE)).values(**_TAKE))
_CLAIM_AGAIN = precompiled(
    _s.update().where(*_SESSION, sa.or_(_s.c.busy_run_id == sa.bindparam("b_run_id"), *_FREE)).values(**_TAKE)
)
_INSERT_RUN = precompiled(_r.insert())
# `status IN (…)` as ORs: an IN list is expanded per execution, these are plain parameters.
_RECORD_RUN = precompiled(
    _r.update().where(_r.c.run_id == sa.bindparam("b_run_id"), sa.or_(*(_r.c.status == v for v in _UNFINISHED)))
)


class SQLStore(WaitingRuns):
    """Sessions and runs in SQLite or PostgreSQL."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        super().__init__(url, pool_size=pool_size)
        self._create_session = precompiled(self._insert_ignore(self.dialect, schema.sessions))

    # --- sessions ---

    async def start_run(self, run: RunRecord, lease_s: float) -> list[bytes]:
        """Record `run` and make it its session's only writer; return the session's history chunks.

        Creates the session when it does not exist. Raises `SessionBusy`, recording nothing, while
        another run holds an unexpired lease on the session, whichever process holds it;
        `ApprovalPending` when that run waits for a decision on a tool call.
        """
        async with self.writer() as conn:
            if not await self._take_session(conn, run, lease_s, again=False):
                if await self.waiting_holds(conn, run.user_id, run.session_id):
                    raise ApprovalPending(
                        f"session {run.session_id!r} has a run waiting for a tool decision: "
                        "resume it (POST /v1/runs/{run_id}/resume) or cancel it first"
                    )
                raise SessionBusy(f"session {run.session_id!r} is running another request; retry when it finishes")
            await conn.execute(_INSERT_RUN, run_row(run))
            return await read_history(conn, run.user_id, run.session_id)

    async def claim_session(self, run: RunRecord, lease_s: float) -> list[bytes] | None:
        """Make a recorded run its session's writer for `lease_s` more seconds, as it starts executing;
        return the session's history. None while another run holds an unexpired lease on it.

        Creates the session again when it was deleted while the run's lease had lapsed."""
        async with self.writer() as conn:
            if not await self._take_session(conn, run, lease_s, again=True):
                return None
            return await read_history(conn, run.user_id, run.session_id)

    async def _take_session(self, conn: AsyncConnection, run: RunRecord, lease_s: float, *, again: bool) -> bool:
        now = time.time()
        session = {"b_user_id": run.user_id, "b_session_id": run.session_id}
        await conn.execute(
            self._create_session,
            {"user_id": run.user_id, "session_id": run.session_id, "created_at": now, "updated_at": now},
        )
        claim = _CLAIM_AGAIN if again else _CLAIM
        claimed = await conn.execute(claim, {**session, "b_now": now, "b_run_id": run.run_id, "b_until": now + lease_s})
        return bool(claimed.rowcount == 1)

    @staticmethod
    def _insert_ignore(dialect: str, table: sa.Table) -> sa.Insert:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing()
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()

    async def get_session(self, user_id: str, session_id: str) -> SessionRecord | None:
        """The session, if it exists for `user_id`."""
        s, r = schema.sessions, schema.runs
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(s.c.created_at, s.c.updated_at).where(
                        s.c.user_id == user_id, s.c.session_id == session_id
                    )
                )
            ).first()
            if row is None:
                return None
            history = await read_history(conn, user_id, session_id)
            cost = (
                await conn.execute(
                    sa.select(sa.func.sum(r.c.cost_usd)).where(r.c.user_id == user_id, r.c.session_id == session_id)
                )
            ).scalar()
        return SessionRecord(session_id, user_id, row.created_at, row.updated_at, history, cost)

    async def delete_session(self, user_id: str, session_id: str) -> bool:
        """Delete a session and its history; False when there was none. `SessionBusy` while running."""
        s, h = schema.sessions, schema.session_history
        now = time.time()
        async with self.writer() as conn:
            row = (
                await conn.execute(
                    sa.select(s.c.busy_run_id, s.c.busy_until).where(
                        s.c.user_id == user_id, s.c.session_id == session_id
                    )
                )
            ).first()
            if row is None:
                return False
            if row.busy_run_id is not None and (row.busy_until or 0) >= now:
                if await self.waiting_holds(conn, user_id, session_id):
                    raise ApprovalPending(f"session {session_id!r} has a run waiting for a tool decision: cancel it")
                raise SessionBusy(f"session {session_id!r} is running a request; delete it when it finishes")
            await conn.execute(h.delete().where(h.c.user_id == user_id, h.c.session_id == session_id))
            await conn.execute(s.delete().where(s.c.user_id == user_id, s.c.session_id == session_id))
            return True

    async def active_sessions(self, since: float) -> list[tuple[str, str]]:
        """`(user_id, session_id)` of every session updated at or after `since`, or held by a run
        now: the sessions whose workspace folders the retention sweep keeps."""
        s = schema.sessions
        recent = sa.or_(s.c.updated_at >= since, s.c.busy_run_id.is_not(None))
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(s.c.user_id, s.c.session_id).where(recent))
            return [(row.user_id, row.session_id) for row in rows]

    # --- runs ---

    async def create_run(self, run: RunRecord) -> None:
        """Record a new run that needs no session (a task's)."""
        async with self.writer() as conn:
            await conn.execute(schema.runs.insert(), run_row(run))

    async def mark_running(self, run_id: str) -> float | None:
        """Mark a queued run running; return when it started, or None once it has finished (a cancel
        came first). A run already running (its process died right after this) keeps its start time."""
        r = schema.runs
        async with self.writer() as conn:
            started = await conn.execute(
                r.update()
                .where(r.c.run_id == run_id)
                .where(r.c.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]))
                .values(status=RunStatus.RUNNING.value, started_at=sa.func.coalesce(r.c.started_at, time.time()))
            )
            if started.rowcount != 1:
                return None
            when: float = (await conn.execute(sa.select(r.c.started_at).where(r.c.run_id == run_id))).scalar_one()
            return when

    async def finish_run(self, run: RunRecord, *, append_to_session: bytes | None) -> bool:
        """Record the run's outcome, append its messages to the session when given, release the
        session's lease: all in one transaction, so a crash leaves either all of it or none.
        A run that already has a final status (a cancel came first) is left as it is: nothing is
        written, and False says so."""
        now = time.time()
        async with self.writer() as conn:
            row = run_row(run)
            del row["run_id"]
            recorded = await conn.execute(_RECORD_RUN, {**row, "b_run_id": run.run_id})
            if recorded.rowcount != 1:
                return False  # it finished meanwhile (a cancel came first): that outcome stands, the session untouched
            await release_session(conn, run, append_to_session, now)
        return True

    async def cancel_run(self, run: RunRecord, *, only_queued: bool) -> bool:
        """Record an unfinished run (only a queued one, if `only_queued`) as `cancelled` and free its
        session; False when it was already past that."""
        r, s = schema.runs, schema.sessions
        now = time.time()
        statuses = [RunStatus.QUEUED.value] if only_queued else [RunStatus.QUEUED.value, RunStatus.RUNNING.value]
        async with self.writer() as conn:
            cancelled = await conn.execute(
                r.update()
                .where(r.c.run_id == run.run_id, r.c.status.in_(statuses))
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
                .where(s.c.user_id == run.user_id, s.c.session_id == run.session_id)
                .where(s.c.busy_run_id == run.run_id)
                .values(busy_run_id=None, busy_until=None, updated_at=now)
            )
            return True

    async def prune_runs(self, before: float, *, limit: int = 500) -> list[str]:
        """Delete up to `limit` runs that finished before `before` (UNIX seconds); return their ids."""
        r = schema.runs
        async with self.writer() as conn:
            finished = (
                sa.select(r.c.run_id)
                .where(r.c.status.in_(_FINISHED), r.c.finished_at < before)
                .order_by(r.c.finished_at)
                .limit(limit)
            )
            ids = list((await conn.execute(finished)).scalars())
            if ids:
                await conn.execute(r.delete().where(r.c.run_id.in_(ids)))
        return ids

    async def get_run(self, user_id: str | None, run_id: str) -> RunRecord | None:
        """The run, if it exists and belongs to `user_id`; `None` for any user's (an admin's view)."""
        r = schema.runs
        owner = () if user_id is None else (r.c.user_id == user_id,)
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(r).where(r.c.run_id == run_id, *owner))).first()
        return None if row is None else run_from_row(row._mapping)

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching `query`, newest first, as summaries: their input, output, messages, steps
        and metadata are left empty, so a page of them stays cheap to read."""
        return await reports.list_runs(self.engine, query)

    async def usage_by_hour(self, user_id: str, since: float, hours: int) -> list[HourUsage]:
        """`hours` consecutive hours from `since` (the start of an hour), oldest first, zero-filled."""
        return await reports.usage_by_hour(self.engine, user_id, since, hours)
