"""`RunBook` and `Takeover` on both databases: conditional writes that two processes cannot both win."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

import pytest

from agentkeep.durable.runs import RunBook
from agentkeep.durable.setup import Identity
from agentkeep.durable.takeover import Takeover
from agentkeep.stores import RunRecord, RunStatus, open_store
from agentkeep.stores.schema import workers
from agentkeep.stores.sql import SQLStore


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(database_url)
    assert isinstance(opened, SQLStore)
    try:
        yield opened
    finally:
        await opened.close()


def _queued(session_id: str) -> RunRecord:
    return RunRecord(
        run_id=f"run_{secrets.token_hex(6)}",
        session_id=session_id,
        user_id="alice",
        agent="a",
        status=RunStatus.QUEUED,
        input="hi",
        created_at=time.time(),
        background=True,
    )


async def test_a_run_starts_once_and_not_after_a_cancel(store: SQLStore) -> None:
    """queued → running keeps the first start time; a run cancelled while queued never starts and frees its session."""
    book = RunBook(store)
    first, second = _queued(f"s-{secrets.token_hex(4)}"), _queued(f"s-{secrets.token_hex(4)}")
    for run in (first, second):
        await store.start_run(run, lease_s=60)
    started_at = await book.start(first)
    assert started_at is not None
    assert await book.start(first) == started_at  # a restart of its own: the start time stays
    assert await book.cancel(second, only_queued=True)
    assert await book.start(second) is None
    assert not await book.cancel(second, only_queued=False)  # already finished: nothing to do
    assert not await book.cancel(first, only_queued=True)  # running: not a queued cancel
    cancelled = await store.get_run("alice", second.run_id)
    assert cancelled is not None and cancelled.status is RunStatus.CANCELLED
    assert await book.claim(_queued(second.session_id), lease_s=60) == []  # the session is free


async def test_a_cancel_recorded_before_the_finish_wins_and_the_session_stays_as_it_was(store: SQLStore) -> None:
    """Cancel, then the run's own finish: the finish writes nothing, so the run stays cancelled and
    its messages never reach the session (no status flip after the cancel's answer)."""
    book = RunBook(store)
    run = _queued(f"s-{secrets.token_hex(4)}")
    await store.start_run(run, lease_s=60)
    await book.start(run)
    assert await book.cancel(run, only_queued=False)
    run.status, run.output = RunStatus.SUCCEEDED, "too late"
    await store.finish_run(run, append_to_session=b'["too late"]')
    record = await store.get_run("alice", run.run_id)
    assert record is not None and record.status is RunStatus.CANCELLED and record.output is None
    session = await store.get_session("alice", run.session_id)
    assert session is not None and session.history_chunks == []


async def test_a_finish_recorded_before_the_cancel_wins_with_its_messages(store: SQLStore) -> None:
    """The run's finish, then a cancel: the cancel changes nothing; succeeded, messages in the session."""
    book = RunBook(store)
    run = _queued(f"s-{secrets.token_hex(4)}")
    await store.start_run(run, lease_s=60)
    await book.start(run)
    run.status, run.output = RunStatus.SUCCEEDED, "done"
    await store.finish_run(run, append_to_session=b'["done"]')
    assert not await book.cancel(run, only_queued=False)
    record = await store.get_run("alice", run.run_id)
    assert record is not None and record.status is RunStatus.SUCCEEDED and record.output == "done"
    session = await store.get_session("alice", run.session_id)
    assert session is not None and session.history_chunks == [b'["done"]']


async def test_a_session_claim_waits_for_another_runs_live_lease(store: SQLStore) -> None:
    """The run keeps its own lease; another run's unexpired lease blocks it; an expired one does not."""
    book = RunBook(store)
    sid = f"s-{secrets.token_hex(4)}"
    mine, other = _queued(sid), _queued(sid)
    await store.start_run(mine, lease_s=60)
    assert await book.claim(mine, lease_s=60) == []
    assert await book.claim(other, lease_s=60) is None
    assert await book.claim(mine, lease_s=-1) == []  # renewed into the past: lapsed
    assert await book.claim(other, lease_s=60) == []


async def test_prune_deletes_only_runs_finished_before_the_cutoff(store: SQLStore) -> None:
    """Old finished runs go; recent ones and unfinished ones stay."""
    book = RunBook(store)
    old, recent, open_run = (_queued(f"s-{secrets.token_hex(4)}") for _ in range(3))
    for run in (old, recent, open_run):
        await store.start_run(run, lease_s=60)
    for run, finished_at in ((old, time.time() - 1000), (recent, time.time())):
        run.status, run.finished_at = RunStatus.SUCCEEDED, finished_at
        await store.finish_run(run, append_to_session=None)
    pruned = await book.prune(time.time() - 500)
    assert old.run_id in pruned and recent.run_id not in pruned and open_run.run_id not in pruned
    assert await store.get_run("alice", old.run_id) is None
    assert await store.get_run("alice", recent.run_id) is not None


async def test_only_one_live_worker_claims_a_dead_one_and_its_lease_expires(store: SQLStore) -> None:
    """Stale after RECOVERY_S/2; two claimers, one winner; the claim lapses after RECOVERY_S; other
    versions and a worker that beats again are left alone."""
    recovery_s = 10.0
    tag = secrets.token_hex(3)
    dead, b, c = (Takeover(store, Identity(f"{n}-{tag}", "v1"), recovery_s) for n in ("dead", "b", "c"))
    other_version = Takeover(store, Identity(f"old-{tag}", "v0"), recovery_s)
    for worker in (dead, b, c, other_version):
        await worker.beat()
    assert await b.claim_stale() == []  # everyone is fresh

    await _age(store, f"dead-{tag}", f"old-{tag}", by=recovery_s / 2 + 1)
    assert await b.claim_stale() == [f"dead-{tag}"]
    assert await c.claim_stale() == []  # b holds the lease
    await _age_claim(store, f"dead-{tag}", by=recovery_s + 1)
    assert await c.claim_stale() == [f"dead-{tag}"]  # b's lease expired: b died too
    await dead.beat()  # it came back: its own launch resumed its runs
    assert await b.claim_stale() == [] and await c.claim_stale() == []
    await dead.retire()
    assert f"dead-{tag}" in await b.claim_stale()


async def _age(store: SQLStore, *executors: str, by: float) -> None:
    async with store.writer() as conn:
        await conn.execute(
            workers.update()
            .where(workers.c.executor_id.in_(executors))
            .values(heartbeat_at=workers.c.heartbeat_at - by)
        )


async def _age_claim(store: SQLStore, executor: str, by: float) -> None:
    async with store.writer() as conn:
        await conn.execute(
            workers.update().where(workers.c.executor_id == executor).values(claimed_at=workers.c.claimed_at - by)
        )
