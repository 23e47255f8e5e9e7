"""Read-only reports over the runs and the ledger: a page of the run list, a user's activity per hour.

Both are read on every refresh of the console, so each is one indexed query:

    the run list     (user_id, created_at) for one user, (created_at) for every user; newest first,
                     paged by the (created_at, run_id) of the last run seen, so a page never shifts
                     when new runs arrive
    activity/hour    the ledger by (user_id, day) for spend and tokens, the runs by (user_id,
                     created_at) for runs started; grouped into hours by the database
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from agentkeep.budget.tables import ledger
from agentkeep.stores.base import HourUsage, RunQuery, RunRecord, RunStatus, Usage
from agentkeep.stores.schema import runs

__all__ = ["HOUR_S", "hour_start", "list_runs", "run_list_query", "usage_by_hour"]

HOUR_S = 3600

_r = runs.c
# What a run list shows; input, output, messages and steps may be large and stay unread.
_SUMMARY = (
    _r.run_id,
    _r.session_id,
    _r.user_id,
    _r.agent,
    _r.status,
    _r.background,
    _r.created_at,
    _r.started_at,
    _r.finished_at,
    _r.error_type,
    _r.error_message,
    _r.usage,
    _r.cost_usd,
    _r.duration_ms,
)


def run_list_query(query: RunQuery) -> sa.Select[tuple[object, ...]]:
    """The SELECT behind `list_runs` (separate so a test can read its plan)."""
    select = sa.select(*_SUMMARY)
    for column, wanted in (
        (_r.user_id, query.user_id),
        (_r.status, query.status.value if query.status is not None else None),
        (_r.agent, query.agent),
        (_r.session_id, query.session_id),
        (_r.run_id, query.run_id),
    ):
        if wanted is not None:
            select = select.where(column == wanted)
    if query.before is not None:
        select = select.where(sa.tuple_(_r.created_at, _r.run_id) < sa.tuple_(*query.before))
    return select.order_by(_r.created_at.desc(), _r.run_id.desc()).limit(query.limit)


async def list_runs(engine: AsyncEngine, query: RunQuery) -> list[RunRecord]:
    async with engine.connect() as conn:
        rows = (await conn.execute(run_list_query(query))).all()
    return [
        RunRecord(
            run_id=row.run_id,
            session_id=row.session_id,
            user_id=row.user_id,
            agent=row.agent,
            status=RunStatus(row.status),
            input="",
            created_at=row.created_at,
            background=bool(row.background),
            started_at=row.started_at,
            finished_at=row.finished_at,
            error_type=row.error_type,
            error_message=row.error_message,
            usage=Usage.from_dict(row.usage),
            cost_usd=row.cost_usd,
            duration_ms=row.duration_ms,
        )
        for row in rows
    ]


async def usage_by_hour(engine: AsyncEngine, user_id: str, since: float, hours: int) -> list[HourUsage]:
    until = since + hours * HOUR_S
    spend = sa.select(
        _bucket(engine, ledger.c.created_at, since).label("bucket"),
        sa.func.coalesce(sa.func.sum(ledger.c.cost_nano), 0),
        sa.func.coalesce(sa.func.sum(ledger.c.input_tokens + ledger.c.output_tokens), 0),
    ).where(
        ledger.c.user_id == user_id,
        ledger.c.day >= _day(since),  # the day bounds let the (user_id, day) index narrow the scan
        ledger.c.day <= _day(until),
        ledger.c.created_at >= since,
        ledger.c.created_at < until,
    )
    started = sa.select(_bucket(engine, _r.created_at, since).label("bucket"), sa.func.count()).where(
        _r.user_id == user_id, _r.created_at >= since, _r.created_at < until
    )
    async with engine.connect() as conn:
        spent = {int(b): (int(c), int(t)) for b, c, t in await conn.execute(spend.group_by(sa.text("bucket")))}
        counted = {int(b): int(n) for b, n in await conn.execute(started.group_by(sa.text("bucket")))}
    return [HourUsage(since + i * HOUR_S, *spent.get(i, (0, 0)), runs=counted.get(i, 0)) for i in range(hours)]


def _bucket(engine: AsyncEngine, column: sa.ColumnElement[float], since: float) -> sa.ColumnElement[int]:
    """Which hour after `since` a time falls in: 0, 1, …. Rows before `since` are filtered out, so
    SQLite's CAST (which truncates towards zero) floors like PostgreSQL's floor()."""
    offset = (column - sa.literal(since, sa.Float)) / HOUR_S
    if engine.dialect.name == "postgresql":
        return sa.cast(sa.func.floor(offset), sa.Integer)
    return sa.cast(offset, sa.Integer)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def hour_start(ts: float | None = None) -> float:
    """The start of the UTC hour holding `ts` (now by default)."""
    now = time.time() if ts is None else ts
    return float(int(now // HOUR_S) * HOUR_S)
