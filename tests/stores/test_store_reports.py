"""The store's reports on every backend: the run list (filters, users, cursor), activity per hour, steps.

Part of the store contract: SQLite and PostgreSQL answer each the same.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from agentkeep.budget.ledger import Ledger
from agentkeep.budget.records import Entry
from agentkeep.stores import RunRecord, RunStatus, Usage, open_store
from agentkeep.stores.base import RunQuery
from agentkeep.stores.reports import HOUR_S, hour_start
from agentkeep.stores.sql import SQLStore


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.close()


def _user() -> str:
    return f"u-{secrets.token_hex(4)}"


async def _finished(
    store: SQLStore,
    user: str,
    created_at: float,
    *,
    status: RunStatus = RunStatus.SUCCEEDED,
    agent: str = "a",
    session_id: str | None = None,
) -> RunRecord:
    run = RunRecord(
        run_id=f"run_{secrets.token_hex(6)}",
        session_id=session_id or f"s-{secrets.token_hex(4)}",
        user_id=user,
        agent=agent,
        status=RunStatus.RUNNING,
        input="a long prompt",
        created_at=created_at,
        started_at=created_at,
    )
    await store.start_run(run, lease_s=60)
    run.status, run.output, run.usage, run.cost_usd = status, "out", Usage(requests=1, input_tokens=5), 0.25
    run.finished_at, run.duration_ms = created_at + 1, 1000.0
    if status is RunStatus.FAILED:
        run.error_type, run.error_message = "model_error", "the model provider answered HTTP 500"
    await store.finish_run(run, append_to_session=None)
    return run


async def test_a_users_runs_come_newest_first_as_summaries(store: SQLStore) -> None:
    """Only the user's own runs; their outcome, usage and cost, but not their input, output or messages."""
    user, other = _user(), _user()
    now = time.time()
    old = await _finished(store, user, now - 10)
    new = await _finished(store, user, now - 5, status=RunStatus.FAILED)
    await _finished(store, other, now)
    runs = await store.list_runs(RunQuery(user_id=user))
    assert [r.run_id for r in runs] == [new.run_id, old.run_id]
    failed = runs[0]
    assert (failed.status, failed.error_type, failed.user_id) == (RunStatus.FAILED, "model_error", user)
    assert (failed.usage.input_tokens, failed.cost_usd, failed.duration_ms) == (5, 0.25, 1000.0)
    assert failed.created_at == new.created_at and failed.finished_at == new.finished_at
    assert (failed.input, failed.output, failed.messages_json, failed.steps_json) == ("", None, None, None)


async def test_filters_combine_and_no_user_means_every_user(store: SQLStore) -> None:
    """status, agent, session and run id narrow the list; user_id=None lists every user's runs."""
    first, second = _user(), _user()
    now = time.time()
    a = await _finished(store, first, now - 3, agent="alpha", session_id="shared")
    b = await _finished(store, first, now - 2, agent="beta", status=RunStatus.FAILED)
    c = await _finished(store, second, now - 1, agent="alpha", session_id="shared")

    def ids(runs: list[RunRecord]) -> list[str]:
        return [r.run_id for r in runs if r.run_id in {a.run_id, b.run_id, c.run_id}]

    assert ids(await store.list_runs(RunQuery(limit=200))) == [c.run_id, b.run_id, a.run_id]
    assert ids(await store.list_runs(RunQuery(agent="alpha", limit=200))) == [c.run_id, a.run_id]
    assert ids(await store.list_runs(RunQuery(status=RunStatus.FAILED, limit=200))) == [b.run_id]
    assert ids(await store.list_runs(RunQuery(user_id=first, session_id="shared"))) == [a.run_id]
    assert ids(await store.list_runs(RunQuery(run_id=c.run_id))) == [c.run_id]
    assert await store.list_runs(RunQuery(user_id=second, status=RunStatus.FAILED)) == []


async def test_the_cursor_resumes_after_the_last_run_even_on_equal_times(store: SQLStore) -> None:
    """Five runs, three sharing one created_at: pages of two return each exactly once, in order."""
    user = _user()
    now = time.time()
    made = [await _finished(store, user, t) for t in (now - 9, now - 5, now - 5, now - 5, now - 1)]
    expected = [r.run_id for r in sorted(made, key=lambda r: (r.created_at, r.run_id), reverse=True)]
    seen: list[str] = []
    before: tuple[float, str] | None = None
    while True:
        page = await store.list_runs(RunQuery(user_id=user, limit=2, before=before))
        seen += [r.run_id for r in page]
        if len(page) < 2:
            break
        before = (page[-1].created_at, page[-1].run_id)
    assert seen == expected


async def test_steps_are_kept_with_the_finished_run(store: SQLStore) -> None:
    """What the runtime serialised into `steps_json` reads back byte for byte with the run."""
    user = _user()
    run = RunRecord(
        run_id=f"run_{secrets.token_hex(6)}",
        session_id="s",
        user_id=user,
        agent="a",
        status=RunStatus.RUNNING,
        input="hi",
        created_at=time.time(),
    )
    await store.start_run(run, lease_s=60)
    run.status, run.steps_json = RunStatus.SUCCEEDED, b'[{"index":0}]'
    await store.finish_run(run, append_to_session=None)
    record = await store.get_run(user, run.run_id)
    assert record is not None and record.steps_json == b'[{"index":0}]'


async def test_usage_by_hour_buckets_the_ledger_and_the_runs_started(store: SQLStore) -> None:
    """Spend and tokens from the ledger, runs by start time, each in its hour; other users and older hours apart."""
    assert isinstance(store, SQLStore)
    user = _user()
    since = hour_start() - 3 * HOUR_S
    ledger = Ledger(store.engine)
    try:
        await _finished(store, user, since + 10)
        await _finished(store, user, since + 2 * HOUR_S + 5)
        await _finished(store, user, since + 2 * HOUR_S + 6)
        await _finished(store, user, since - 10)  # before the window
        await _finished(store, _user(), since + 10)  # someone else
        entries = [
            (user, since + 20, 1_000, 3, 4),
            (user, since + 2 * HOUR_S + 100, 2_000, 10, 20),
            (user, since + 2 * HOUR_S + 200, None, 1, 1),  # unpriced: tokens count, cost adds nothing
            (user, since - 100, 9_999, 100, 100),
            (_user(), since + 20, 9_999, 100, 100),
        ]
        for owner, at, cost, tokens_in, tokens_out in entries:
            await ledger.settle(Entry("r", owner, "s", "a", "model", "m", tokens_in, tokens_out, cost), None)
            async with store.engine.begin() as conn:  # the ledger stamps the present; move the row to `at`
                table = sa.table("agentkeep_ledger", sa.column("id"), sa.column("created_at"))
                newest = sa.select(sa.func.max(table.c.id)).scalar_subquery()
                await conn.execute(table.update().where(table.c.id == newest).values(created_at=at))
        hours = await store.usage_by_hour(user, since, 4)
    finally:
        ledger.close()
    assert [h.hour for h in hours] == [since + i * HOUR_S for i in range(4)]
    assert [(h.cost_nano, h.tokens, h.runs) for h in hours] == [(1_000, 7, 1), (0, 0, 0), (2_000, 32, 2), (0, 0, 0)]


async def test_a_database_from_before_the_steps_column_gains_it(database_url: str) -> None:
    """Migration 5 adds `steps` and the time index to a runs table made without them, and runs once."""
    first = await open_store(database_url)
    assert isinstance(first, SQLStore)
    async with first.engine.begin() as conn:
        await conn.execute(sa.text("DROP INDEX IF EXISTS ix_agentkeep_runs_created"))
        await conn.execute(sa.text("ALTER TABLE agentkeep_runs DROP COLUMN steps"))
        await conn.execute(sa.text("DELETE FROM agentkeep_schema_version WHERE version = 5"))
    await first.close()
    again = await open_store(database_url)
    try:
        user = _user()
        await _finished(again, user, time.time())
        assert len(await again.list_runs(RunQuery(user_id=user))) == 1
        assert isinstance(again, SQLStore)
        async with again.engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: [col["name"] for col in sa.inspect(c).get_columns("agentkeep_runs")]
            )
            indexes = await conn.run_sync(lambda c: [ix["name"] for ix in sa.inspect(c).get_indexes("agentkeep_runs")])
        assert "steps" in columns and "ix_agentkeep_runs_created" in indexes
    finally:
        await again.close()
