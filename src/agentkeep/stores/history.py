"""A session's history and its lease, as every way a run ends writes them.

    read_history()      a session's history chunks, oldest first
    release_session()   the session's lease given back by the run holding it, and the run's messages
                        appended as the next chunk when given: only while that run still holds the
                        lease, so a run whose lease lapsed (and may have been taken over) never
                        writes into the history

`SQLStore.finish_run` (a run that ended) and `WaitingRuns.close_waiting` (a waiting run cancelled
or timed out) both end here, in their own transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agentkeep.sqlite import precompiled
from agentkeep.stores import schema
from agentkeep.stores.base import RunRecord

__all__ = ["read_history", "release_session"]

_s, _h = schema.sessions, schema.session_history
_SESSION = (_s.c.user_id == sa.bindparam("b_user_id"), _s.c.session_id == sa.bindparam("b_session_id"))
_HISTORY = precompiled(
    sa.select(_h.c.messages)
    .where(_h.c.user_id == sa.bindparam("b_user_id"), _h.c.session_id == sa.bindparam("b_session_id"))
    .order_by(_h.c.seq)
)
_RELEASE = precompiled(
    _s.update()
    .where(*_SESSION, _s.c.busy_run_id == sa.bindparam("b_run_id"))
    .values(busy_run_id=None, busy_until=None, updated_at=sa.bindparam("b_now"))
)
_NEXT_SEQ = precompiled(
    sa.select(sa.func.coalesce(sa.func.max(_h.c.seq), 0) + 1).where(
        _h.c.user_id == sa.bindparam("b_user_id"), _h.c.session_id == sa.bindparam("b_session_id")
    )
)
_APPEND = precompiled(_h.insert())


async def read_history(conn: AsyncConnection, user_id: str, session_id: str) -> list[bytes]:
    rows = await conn.execute(_HISTORY, {"b_user_id": user_id, "b_session_id": session_id})
    return [bytes(r) for r in rows.scalars()]


async def release_session(conn: AsyncConnection, run: RunRecord, messages: bytes | None, now: float) -> bool:
    """Give `run`'s session lease back, appending `messages` to its history; False (nothing
    written) when the run no longer held the lease."""
    session = {"b_user_id": run.user_id, "b_session_id": run.session_id}
    released = await conn.execute(_RELEASE, {**session, "b_run_id": run.run_id, "b_now": now})
    if released.rowcount != 1:
        return False
    if messages is not None:
        next_seq = (await conn.execute(_NEXT_SEQ, session)).scalar_one()
        await conn.execute(
            _APPEND,
            {
                "user_id": run.user_id,
                "session_id": run.session_id,
                "seq": next_seq,
                "run_id": run.run_id,
                "messages": messages,
                "created_at": now,
            },
        )
    return True
