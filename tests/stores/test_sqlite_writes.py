"""SQLite writes run on the event loop only when nothing makes them wait; otherwise they wait on a
thread, with the loop free, and a cancelled writer leaves no transaction behind."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agentkeep.sqlite import write_lock
from agentkeep.stores import RunRecord, RunStatus, open_store, schema
from agentkeep.stores.sql import SQLStore

WAIT_S = 10.0
BLOCKED_S = 0.5  # a turn of the loop this slow means something on it waited for the lock


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLStore]:
    opened = await open_store(f"sqlite:///{tmp_path}/agentkeep.db")
    assert isinstance(opened, SQLStore)
    try:
        yield opened
    finally:
        await opened.close()


@contextlib.contextmanager
def other_writer(database: Path) -> Iterator[sqlite3.Connection]:
    """Another connection (as another process would) holding the file's write lock until committed."""
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.close()


def _record(run_id: str) -> RunRecord:
    return RunRecord(run_id, "s1", "alice", "a", RunStatus.QUEUED, "hi", time.time())


async def _ticks_while(task: asyncio.Task[None], ticks: int) -> None:
    """The loop keeps running other work while `task` waits: `ticks` turns of it, task still pending."""
    for _ in range(ticks):
        started = time.monotonic()
        await asyncio.sleep(0.01)
        assert time.monotonic() - started < BLOCKED_S, "the write blocked the event loop while it waited"
        assert not task.done(), "the write finished while another writer held the write lock"


async def test_a_write_waits_for_another_connections_lock_off_the_loop(store: SQLStore, tmp_path: Path) -> None:
    """Another process holds the write lock: the store's write waits on a thread, the loop runs on."""
    with other_writer(tmp_path / "agentkeep.db") as other:
        task = asyncio.create_task(store.create_run(_record("run_1")))
        await _ticks_while(task, 20)
        other.execute("COMMIT")
        await asyncio.wait_for(task, WAIT_S)
    assert await store.get_run("alice", "run_1") is not None


async def test_a_write_waits_for_this_processs_other_writers(store: SQLStore, tmp_path: Path) -> None:
    """The file's write lock is one per process (the ledger's too): held, the store's write waits off the loop."""
    lock = write_lock(str(tmp_path / "agentkeep.db"))
    lock.acquire()  # as the budget ledger's thread would, mid-transaction
    try:
        task = asyncio.create_task(store.create_run(_record("run_1")))
        await _ticks_while(task, 20)
    finally:
        lock.release()
    await asyncio.wait_for(task, WAIT_S)
    assert await store.get_run("alice", "run_1") is not None


async def test_a_cancelled_waiting_write_leaves_nothing_open(store: SQLStore, tmp_path: Path) -> None:
    """A writer cancelled while it waits for the lock leaves no open transaction: the next write goes through."""
    with other_writer(tmp_path / "agentkeep.db") as other:
        task = asyncio.create_task(store.create_run(_record("run_1")))
        await _ticks_while(task, 5)
        task.cancel()
        other.execute("COMMIT")
    with pytest.raises(asyncio.CancelledError):
        await task
    # The cancelled transaction was ended and the lock handed on: the next write goes through.
    await asyncio.wait_for(store.create_run(_record("run_2")), WAIT_S)
    assert await store.get_run("alice", "run_2") is not None


async def test_writes_on_the_loop_are_checkpointed_into_the_database_file(
    store: SQLStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits made on the loop skip SQLite's own checkpoint; every CHECKPOINT_EVERY-th runs one on a thread."""
    monkeypatch.setattr("agentkeep.sqlite.transactions.CHECKPOINT_EVERY", 3)
    for i in range(3):
        await store.create_run(_record(f"run_{i}"))
    deadline = time.monotonic() + WAIT_S
    while True:
        # `immutable` reads the database file alone, not the WAL: the rows are there once checkpointed.
        main_file = sqlite3.connect(f"{(tmp_path / 'agentkeep.db').as_uri()}?immutable=1", uri=True)
        try:
            count = main_file.execute(f"SELECT count(*) FROM {schema.runs.name}").fetchone()[0]
        except sqlite3.OperationalError:  # not even the table yet: the migrations are in the WAL too
            count = 0
        finally:
            main_file.close()
        if count > 0:  # a checkpoint ran: every third commit made on the loop asks for one
            break
        assert time.monotonic() < deadline, "no run reached the database file: the WAL is never checkpointed"
        await asyncio.sleep(0.02)
