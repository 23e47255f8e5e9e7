"""Runs waiting for a decision on a tool call: every statement of their wait, each conditional.

A waiting run keeps its session: the lease it took when it started is stretched to its deadline
(AGENTKEEP_APPROVAL_TIMEOUT_S), so the session takes no other run meanwhile, whichever process asks.
Everything it needs to continue is in its row, so any process of a fleet can resume it, after any
restart:

    pause_run()       running → waiting_approval: its messages so far, the pending calls, what it
                      needs to continue, its deadline; the session's lease stretched to match
    resume_run()      waiting_approval → running (or queued, for a background resume) with the
                      decisions, once: of two resumes racing, one wins; the lease renewed
    close_waiting()   waiting_approval → cancelled (a cancel, or its deadline passed): the closing
                      messages appended to the session, the lease released; once, like the rest
    expired_waiting() the waiting runs whose deadline has passed
    waiting_holds()   whether a session is held by a waiting run (`approval_pending`, not `session_busy`)

`WaitingRuns` is a base of `SQLStore`, which is where callers find these.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agentkeep.sqlite import precompiled
from agentkeep.stores import schema
from agentkeep.stores.base import RunRecord, RunStatus
from agentkeep.stores.database import Database
from agentkeep.stores.history import read_history, release_session
from agentkeep.stores.rows import run_from_row, run_row

__all__ = ["WaitingRuns"]

_s, _r = schema.sessions, schema.runs
_WAITING = RunStatus.WAITING_APPROVAL.value
_SESSION = (_s.c.user_id == sa.bindparam("b_user_id"), _s.c.session_id == sa.bindparam("b_session_id"))
_RUN = _r.c.run_id == sa.bindparam("b_run_id")
_PAUSE = precompiled(_r.update().where(_RUN, _r.c.status == RunStatus.RUNNING.value))
_RESUME = precompiled(_r.update().where(_RUN, _r.c.status == _WAITING, _r.c.resumes == sa.bindparam("b_resumes")))
_CLOSE = precompiled(_r.update().where(_RUN, _r.c.status == _WAITING))
_STRETCH = precompiled(
    _s.update()
    .where(*_SESSION, _s.c.busy_run_id == sa.bindparam("b_run_id"))
    .values(busy_until=sa.bindparam("b_until"))
)


class WaitingRuns(Database):
    """The statements of runs waiting for tool decisions; see the module docstring."""

    async def pause_run(self, run: RunRecord, lease_until: float) -> bool:
        """Record `run` (status `waiting_approval`, its pending calls and messages set) and keep its
        session until `lease_until`; False when it had finished meanwhile (a cancel came first)."""
        async with self.writer() as conn:
            row = run_row(run)
            del row["run_id"]
            paused = await conn.execute(_PAUSE, {**row, "b_run_id": run.run_id})
            if paused.rowcount != 1:
                return False
            await self._stretch(conn, run, lease_until)
        return True

    async def resume_run(self, run: RunRecord, lease_s: float) -> list[bytes] | None:
        """Move a waiting run on, as `run` now says (its status, decisions, `resumes` one up), if it
        is still waiting at `run.resumes - 1` resumes; return its session's history, or None when
        another resume or a cancel came first."""
        values = {
            "status": run.status.value,
            "background": run.background,
            "deferred": run.deferred_json,
            "pending": None,
            "waiting_until": None,
            "resumes": run.resumes,
        }
        async with self.writer() as conn:
            moved = await conn.execute(_RESUME, {**values, "b_run_id": run.run_id, "b_resumes": run.resumes - 1})
            if moved.rowcount != 1:
                return None
            await self._stretch(conn, run, time.time() + lease_s)
            return await read_history(conn, run.user_id, run.session_id)

    async def close_waiting(self, run: RunRecord, *, append_to_session: bytes | None) -> bool:
        """Record a waiting run's end as `run` says (cancelled), append `append_to_session` (its
        messages, their pending calls closed) to its session and release it; False when it was
        not waiting any more (resumed, or closed by another process first)."""
        now = time.time()
        async with self.writer() as conn:
            row = run_row(run)
            del row["run_id"]
            closed = await conn.execute(_CLOSE, {**row, "b_run_id": run.run_id})
            if closed.rowcount != 1:
                return False
            await release_session(conn, run, append_to_session, now)
        return True

    async def expired_waiting(self, now: float, *, limit: int = 100) -> list[RunRecord]:
        """Up to `limit` waiting runs whose deadline is before `now`, oldest deadline first."""
        query = (
            sa.select(_r)
            .where(_r.c.status == _WAITING, _r.c.waiting_until < now)
            .order_by(_r.c.waiting_until)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [run_from_row(row._mapping) for row in rows]

    @staticmethod
    async def waiting_holds(conn: AsyncConnection, user_id: str, session_id: str) -> bool:
        """Whether the run holding this session's lease is waiting for a decision."""
        holder = sa.select(_r.c.status).select_from(_s.join(_r, _r.c.run_id == _s.c.busy_run_id))
        status = (await conn.execute(holder.where(_s.c.user_id == user_id, _s.c.session_id == session_id))).scalar()
        return status == _WAITING

    @staticmethod
    async def _stretch(conn: AsyncConnection, run: RunRecord, until: float) -> None:
        session = {"b_user_id": run.user_id, "b_session_id": run.session_id}
        await conn.execute(_STRETCH, {**session, "b_run_id": run.run_id, "b_until": until})
