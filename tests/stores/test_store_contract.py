"""One contract for every Store backend: SQLite and PostgreSQL behave the same."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from agentkeep.errors import SessionBusy
from agentkeep.stores import RunRecord, RunStatus, Store, Usage, open_store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.close()


def _run(session_id: str, user: str = "alice", **kw: object) -> RunRecord:
    return RunRecord(
        run_id=f"run_{secrets.token_hex(6)}",
        session_id=session_id,
        user_id=user,
        agent="a",
        status=RunStatus.RUNNING,
        input="hello",
        created_at=time.time(),
        **kw,  # type: ignore[arg-type]
    )


def _sid() -> str:
    return f"s-{secrets.token_hex(4)}"


async def test_a_finished_run_appends_its_messages_to_the_session(store: Store) -> None:
    """History is what successful runs appended, in order, and the run record reads back."""
    sid = _sid()
    first = _run(sid)
    assert await store.start_run(first, lease_s=60) == []
    first.status, first.output, first.usage = RunStatus.SUCCEEDED, "out", Usage(requests=2, tool_calls=1)
    await store.finish_run(first, append_to_session=b'["one"]')
    second = _run(sid)
    assert await store.start_run(second, lease_s=60) == [b'["one"]']
    second.status = RunStatus.SUCCEEDED
    await store.finish_run(second, append_to_session=b'["two"]')

    session = await store.get_session("alice", sid)
    assert session is not None
    assert session.history_chunks == [b'["one"]', b'["two"]']
    record = await store.get_run("alice", first.run_id)
    assert record is not None
    assert (record.status, record.output, record.usage.requests) == (RunStatus.SUCCEEDED, "out", 2)


async def test_every_field_of_a_finished_run_reads_back_as_written(store: Store) -> None:
    """JSON, boolean and binary columns survive the write path (SQLite's runs on the driver itself),
    and a run's outcome is written once: a second finish changes nothing."""
    sid = _sid()
    run = _run(sid, metadata={"team": "a", "n": [1, 2]}, webhook_url="https://example.test/hook")
    run.started_at = run.created_at
    await store.start_run(run, lease_s=60)
    run.status, run.output, run.cost_usd, run.duration_ms = RunStatus.SUCCEEDED, "out ✓", 0.25, 12.5
    run.finished_at, run.tools_used = time.time(), ["add", "search"]
    run.usage = Usage(requests=2, tool_calls=1, input_tokens=7, output_tokens=5)
    run.messages_json, run.steps_json = b'["m"]', b'[{"kind": "model"}]'
    await store.finish_run(run, append_to_session=b'["m"]')
    run.status, run.output = RunStatus.FAILED, "overwritten"
    await store.finish_run(run, append_to_session=b'["again"]')

    record = await store.get_run("alice", run.run_id)
    assert record is not None
    assert (record.status, record.output, record.cost_usd, record.duration_ms) == (
        RunStatus.SUCCEEDED,
        "out ✓",
        0.25,
        12.5,
    )
    assert (record.metadata, record.webhook_url, record.background) == (run.metadata, run.webhook_url, False)
    assert (record.tools_used, record.usage.as_dict()) == (["add", "search"], run.usage.as_dict())
    assert (record.messages_json, record.steps_json) == (b'["m"]', b'[{"kind": "model"}]')
    session = await store.get_session("alice", sid)
    assert session is not None and session.history_chunks == [b'["m"]']


async def test_second_claim_on_a_running_session_is_busy_and_records_nothing(store: Store) -> None:
    """Only one run writes a session at a time; the refused run leaves no record behind."""
    sid = _sid()
    holder = _run(sid)
    await store.start_run(holder, lease_s=60)
    refused = _run(sid)
    with pytest.raises(SessionBusy):
        await store.start_run(refused, lease_s=60)
    assert await store.get_run("alice", refused.run_id) is None
    holder.status = RunStatus.SUCCEEDED
    await store.finish_run(holder, append_to_session=None)
    await store.start_run(_run(sid), lease_s=60)


async def test_concurrent_claims_admit_exactly_one(store: Store) -> None:
    """Twenty simultaneous claims on one session: one wins, nineteen get SessionBusy."""
    sid = _sid()
    results = await asyncio.gather(*(store.start_run(_run(sid), lease_s=60) for _ in range(20)), return_exceptions=True)
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 1
    assert all(isinstance(r, SessionBusy) for r in results if isinstance(r, BaseException))


async def test_an_expired_lease_can_be_taken_over_and_the_old_run_cannot_write(store: Store) -> None:
    """A crashed process's claim expires; its late finish must not write into the history."""
    sid = _sid()
    stale = _run(sid)
    await store.start_run(stale, lease_s=-1)
    fresh = _run(sid)
    await store.start_run(fresh, lease_s=60)
    stale.status = RunStatus.SUCCEEDED
    await store.finish_run(stale, append_to_session=b'["stale"]')
    session = await store.get_session("alice", sid)
    assert session is not None and session.history_chunks == []


async def test_a_failed_run_leaves_the_session_as_it_was(store: Store) -> None:
    """A failed run keeps its partial messages in its record, not in the session."""
    sid = _sid()
    run = _run(sid)
    await store.start_run(run, lease_s=60)
    run.status, run.error_type, run.messages_json = RunStatus.FAILED, "model_error", b'["partial"]'
    await store.finish_run(run, append_to_session=None)
    session = await store.get_session("alice", sid)
    assert session is not None and session.history_chunks == []
    record = await store.get_run("alice", run.run_id)
    assert record is not None and record.messages_json == b'["partial"]' and record.error_type == "model_error"


async def test_users_never_see_each_others_sessions_or_runs(store: Store) -> None:
    """The same session id under two users is two sessions; a foreign run id reads as missing."""
    sid = _sid()
    alice = _run(sid, user="alice")
    await store.start_run(alice, lease_s=60)
    bob = _run(sid, user="bob")
    await store.start_run(bob, lease_s=60)  # not busy: bob's session is his own
    assert await store.get_run("bob", alice.run_id) is None
    assert await store.get_session("carol", sid) is None


async def test_delete_removes_history_and_refuses_while_running(store: Store) -> None:
    """DELETE of a running session is refused; afterwards the session is gone."""
    sid = _sid()
    run = _run(sid)
    await store.start_run(run, lease_s=60)
    with pytest.raises(SessionBusy):
        await store.delete_session("alice", sid)
    run.status = RunStatus.SUCCEEDED
    await store.finish_run(run, append_to_session=b"[]")
    assert await store.delete_session("alice", sid) is True
    assert await store.get_session("alice", sid) is None
    assert await store.delete_session("alice", sid) is False


async def test_reopening_keeps_data_and_migrations_run_once(database_url: str) -> None:
    """A restart finds every acknowledged session; opening twice does not re-run migrations."""
    sid = _sid()
    first = await open_store(database_url)
    run = _run(sid)
    await first.start_run(run, lease_s=60)
    run.status = RunStatus.SUCCEEDED
    await first.finish_run(run, append_to_session=b'["kept"]')
    await first.close()
    again = await open_store(database_url)
    try:
        session = await again.get_session("alice", sid)
        assert session is not None and session.history_chunks == [b'["kept"]']
        await again.ping()
    finally:
        await again.close()
