"""The store's side of runs waiting for tool decisions, and outputs as JSON, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from agentkeep.errors import ApprovalPending, SessionBusy
from agentkeep.stores import RunRecord, RunStatus, open_store
from agentkeep.stores.sql import SQLStore

PENDING = [{"tool_call_id": "c1", "tool_name": "delete_file", "args": {"path": "a"}, "kind": "approval"}]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.close()


def _run(session_id: str, **kw: object) -> RunRecord:
    return RunRecord(
        run_id=f"run_{secrets.token_hex(6)}",
        session_id=session_id,
        user_id="alice",
        agent="a",
        status=RunStatus.RUNNING,
        input="hello",
        created_at=time.time(),
        **kw,  # type: ignore[arg-type]
    )


async def _paused(store: SQLStore, *, until: float | None = None) -> RunRecord:
    run = _run(f"s-{secrets.token_hex(4)}")
    await store.start_run(run, lease_s=60)
    run.status, run.pending, run.deferred_json = RunStatus.WAITING_APPROVAL, PENDING, b'{"requests": {}}'
    run.messages_json, run.waiting_until = b'["up to the pause"]', until or time.time() + 3600
    assert await store.pause_run(run, run.waiting_until + 60)
    return run


@pytest.mark.parametrize("output", ["plain text", "42", {"name": "Paris", "tags": ["a"]}, [1, 2], 7, True, None])
async def test_an_output_reads_back_as_the_json_value_it_was(store: SQLStore, output: object) -> None:
    """A text output stays a string (even one that looks like a number), a structured one its object."""
    run = _run(f"s-{secrets.token_hex(4)}")
    await store.start_run(run, lease_s=60)
    run.status, run.output = RunStatus.SUCCEEDED, output
    await store.finish_run(run, append_to_session=None)
    record = await store.get_run("alice", run.run_id)
    assert record is not None and record.output == output and type(record.output) is type(output)


async def test_a_waiting_run_reads_back_and_its_session_refuses_new_runs(store: SQLStore) -> None:
    """The paused run keeps its pending calls, state and messages; a new run on its session is
    `ApprovalPending` (still a `SessionBusy`), and records nothing."""
    run = await _paused(store)
    record = await store.get_run("alice", run.run_id)
    assert record is not None and record.status is RunStatus.WAITING_APPROVAL
    assert (record.pending, record.deferred_json, record.messages_json) == (
        PENDING,
        b'{"requests": {}}',
        b'["up to the pause"]',
    )
    assert record.finished_at is None and record.resumes == 0
    other = _run(run.session_id)
    with pytest.raises(ApprovalPending) as refused:
        await store.start_run(other, lease_s=60)
    assert isinstance(refused.value, SessionBusy)
    assert await store.get_run("alice", other.run_id) is None


async def test_two_resumes_racing_move_the_run_on_once(store: SQLStore) -> None:
    """Of two resumes at once, one gets the session's history and the run; the other gets None."""
    run = await _paused(store)
    resumed = dataclasses.replace(run, status=RunStatus.RUNNING, pending=None, resumes=1, deferred_json=b"{}")
    results = await asyncio.gather(*(store.resume_run(dataclasses.replace(resumed), 60) for _ in range(2)))
    assert sorted(results, key=lambda r: r is None) == [[], None]
    record = await store.get_run("alice", run.run_id)
    assert record is not None and (record.status, record.resumes, record.pending) == (RunStatus.RUNNING, 1, None)


async def test_a_waiting_run_closes_once_with_its_closing_messages_in_the_session(store: SQLStore) -> None:
    """The close records `cancelled`, appends the closing chunk and frees the session; a second close,
    or a resume after it, changes nothing, and the session takes the next run."""
    run = await _paused(store)
    closed = dataclasses.replace(run, status=RunStatus.CANCELLED, pending=None, finished_at=time.time())
    assert await store.close_waiting(closed, append_to_session=b'["closed"]')
    assert not await store.close_waiting(closed, append_to_session=b'["again"]')
    assert await store.resume_run(dataclasses.replace(run, resumes=1), 60) is None
    session = await store.get_session("alice", run.session_id)
    assert session is not None and session.history_chunks == [b'["closed"]']
    assert await store.start_run(_run(run.session_id), lease_s=60) == [b'["closed"]']


async def test_only_runs_past_their_deadline_are_expired(store: SQLStore) -> None:
    """`expired_waiting` lists the waiting runs whose deadline passed, not the others."""
    late = await _paused(store, until=time.time() - 1)
    await _paused(store)
    assert late.run_id in [r.run_id for r in await store.expired_waiting(time.time())]
    now = time.time()
    assert all(r.waiting_until is not None and r.waiting_until < now for r in await store.expired_waiting(now))


async def test_a_database_from_before_migration_7_keeps_its_outputs_as_text(database_url: str) -> None:
    """Migration 7 adds the waiting columns to a runs table without them, and an output stored as plain
    text before (even text that is JSON) reads back as that text."""
    first = await open_store(database_url)
    run = _run(f"s-{secrets.token_hex(4)}")
    await first.start_run(run, lease_s=60)
    run.status = RunStatus.SUCCEEDED
    await first.finish_run(run, append_to_session=None)
    structured = _run(f"s-{secrets.token_hex(4)}")
    await first.start_run(structured, lease_s=60)
    structured.status = RunStatus.SUCCEEDED
    await first.finish_run(structured, append_to_session=None)
    async with first.engine.begin() as conn:
        for column in ("pending", "deferred", "waiting_until", "resumes"):
            await conn.execute(sa.text(f"ALTER TABLE agentkeep_runs DROP COLUMN {column}"))
        for run_id, text in ((run.run_id, "an old answer"), (structured.run_id, '{"a": 1}')):
            update = sa.text("UPDATE agentkeep_runs SET output = :text WHERE run_id = :run_id")
            await conn.execute(update, {"text": text, "run_id": run_id})
        await conn.execute(sa.text("DELETE FROM agentkeep_schema_version WHERE version = 7"))
    await first.close()
    again = await open_store(database_url)
    try:
        old, old_structured = await again.get_run("alice", run.run_id), await again.get_run("alice", structured.run_id)
        assert old is not None and old.output == "an old answer" and old.resumes == 0 and old.pending is None
        assert old_structured is not None and old_structured.output == '{"a": 1}'
    finally:
        await again.close()
