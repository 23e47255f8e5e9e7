"""One contract for the store on every database: SQLite and PostgreSQL behave the same."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from agentkeep.errors import SessionBusy
from agentkeep.stores import RunRecord, RunStatus, Usage, open_store
from agentkeep.stores.sql import SQLStore


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SQLStore]:
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


async def test_a_finished_run_appends_its_messages_to_the_session(store: SQLStore) -> None:
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


async def test_every_field_of_a_finished_run_reads_back_as_written(store: SQLStore) -> None:
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


async def test_second_claim_on_a_running_session_is_busy_and_records_nothing(store: SQLStore) -> None:
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


async def test_concurrent_claims_admit_exactly_one(store: SQLStore) -> None:
    """Twenty simultaneous claims on one session: one wins, nineteen get SessionBusy."""
    sid = _sid()
    results = await asyncio.gather(*(store.start_run(_run(sid), lease_s=60) for _ in range(20)), return_exceptions=True)
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 1
    assert all(isinstance(r, SessionBusy) for r in results if isinstance(r, BaseException))


async def test_an_expired_lease_can_be_taken_over_and_the_old_run_cannot_write(store: SQLStore) -> None:
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


async def test_a_failed_run_leaves_the_session_as_it_was(store: SQLStore) -> None:
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


async def test_users_never_see_each_others_sessions_or_runs(store: SQLStore) -> None:
    """The same session id under two users is two sessions; a foreign run id reads as missing."""
    sid = _sid()
    alice = _run(sid, user="alice")
    await store.start_run(alice, lease_s=60)
    bob = _run(sid, user="bob")
    await store.start_run(bob, lease_s=60)  # not busy: bob's session is his own
    assert await store.get_run("bob", alice.run_id) is None
    assert await store.get_session("carol", sid) is None


async def test_delete_removes_history_and_refuses_while_running(store: SQLStore) -> None:
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


# --- background runs: the durable engine's writes, each conditional so that racers cannot both win ---


def _queued(session_id: str) -> RunRecord:
    return dataclasses.replace(_run(session_id, background=True), status=RunStatus.QUEUED)


async def test_a_run_starts_once_and_not_after_a_cancel(store: SQLStore) -> None:
    """queued → running keeps the first start time; a run cancelled while queued never starts and frees its session."""
    first, second = _queued(_sid()), _queued(_sid())
    for run in (first, second):
        await store.start_run(run, lease_s=60)
    started_at = await store.mark_running(first.run_id)
    assert started_at is not None
    assert await store.mark_running(first.run_id) == started_at  # a restart of its own: the start time stays
    assert await store.cancel_run(second, only_queued=True)
    assert await store.mark_running(second.run_id) is None
    assert not await store.cancel_run(second, only_queued=False)  # already finished: nothing to do
    assert not await store.cancel_run(first, only_queued=True)  # running: not a queued cancel
    cancelled = await store.get_run("alice", second.run_id)
    assert cancelled is not None and cancelled.status is RunStatus.CANCELLED
    assert cancelled.error_type == "cancelled" and cancelled.finished_at is not None
    assert await store.claim_session(_queued(second.session_id), lease_s=60) == []  # the session is free


async def test_a_cancel_recorded_before_the_finish_wins_and_the_session_stays_as_it_was(store: SQLStore) -> None:
    """Cancel, then the run's own finish: the finish writes nothing, so the run stays cancelled and
    its messages never reach the session (no status flip after the cancel's answer)."""
    run = _queued(_sid())
    await store.start_run(run, lease_s=60)
    await store.mark_running(run.run_id)
    assert await store.cancel_run(run, only_queued=False)
    run.status, run.output = RunStatus.SUCCEEDED, "too late"
    assert not await store.finish_run(run, append_to_session=b'["too late"]')
    record = await store.get_run("alice", run.run_id)
    assert record is not None and record.status is RunStatus.CANCELLED and record.output is None
    session = await store.get_session("alice", run.session_id)
    assert session is not None and session.history_chunks == []


async def test_a_finish_recorded_before_the_cancel_wins_with_its_messages(store: SQLStore) -> None:
    """The run's finish, then a cancel: the cancel changes nothing; succeeded, messages in the session."""
    run = _queued(_sid())
    await store.start_run(run, lease_s=60)
    await store.mark_running(run.run_id)
    run.status, run.output = RunStatus.SUCCEEDED, "done"
    await store.finish_run(run, append_to_session=b'["done"]')
    assert not await store.cancel_run(run, only_queued=False)
    record = await store.get_run("alice", run.run_id)
    assert record is not None and record.status is RunStatus.SUCCEEDED and record.output == "done"
    session = await store.get_session("alice", run.session_id)
    assert session is not None and session.history_chunks == [b'["done"]']


async def test_racing_cancels_of_one_run_record_it_once(store: SQLStore) -> None:
    """Ten cancels at once (as from several processes): one reports the cancel, the rest find it done."""
    run = _queued(_sid())
    await store.start_run(run, lease_s=60)
    results = await asyncio.gather(*(store.cancel_run(run, only_queued=False) for _ in range(10)))
    assert results.count(True) == 1


async def test_a_session_claim_waits_for_another_runs_live_lease(store: SQLStore) -> None:
    """The run keeps its own lease; another run's unexpired lease blocks it; an expired one does not."""
    sid = _sid()
    mine, other = _queued(sid), _queued(sid)
    await store.start_run(mine, lease_s=60)
    assert await store.claim_session(mine, lease_s=60) == []
    assert await store.claim_session(other, lease_s=60) is None
    assert await store.claim_session(mine, lease_s=-1) == []  # renewed into the past: lapsed
    assert await store.claim_session(other, lease_s=60) == []


async def test_racing_session_claims_admit_one_run_and_see_its_history(store: SQLStore) -> None:
    """Ten queued runs of one session claim it at once: one wins, and it reads the session's history."""
    sid = _sid()
    earlier = _run(sid)
    await store.start_run(earlier, lease_s=60)
    earlier.status = RunStatus.SUCCEEDED
    await store.finish_run(earlier, append_to_session=b'["before"]')
    results = await asyncio.gather(*(store.claim_session(_queued(sid), lease_s=60) for _ in range(10)))
    assert [r for r in results if r is not None] == [[b'["before"]']]


async def test_a_claim_recreates_a_session_deleted_while_its_run_waited(store: SQLStore) -> None:
    """A queued run whose lease lapsed may find its session deleted; it starts on a new, empty one."""
    run = _queued(_sid())
    await store.start_run(run, lease_s=-1)
    assert await store.delete_session("alice", run.session_id)
    assert await store.claim_session(run, lease_s=60) == []
    assert await store.get_session("alice", run.session_id) is not None


async def test_prune_deletes_only_runs_finished_before_the_cutoff(store: SQLStore) -> None:
    """Old finished runs go; recent ones and unfinished ones stay; a batch is at most `limit` runs."""
    old, older, recent, open_run = (_queued(_sid()) for _ in range(4))
    for run in (old, older, recent, open_run):
        await store.start_run(run, lease_s=60)
    for run, finished_at in ((old, time.time() - 1000), (older, time.time() - 2000), (recent, time.time())):
        run.status, run.finished_at = RunStatus.SUCCEEDED, finished_at
        await store.finish_run(run, append_to_session=None)
    assert await store.prune_runs(time.time() - 500, limit=1) == [older.run_id]  # the oldest first
    pruned = await store.prune_runs(time.time() - 500)
    assert old.run_id in pruned and recent.run_id not in pruned and open_run.run_id not in pruned
    assert await store.get_run("alice", old.run_id) is None
    assert await store.get_run("alice", recent.run_id) is not None
