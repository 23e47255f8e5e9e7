"""On SQLite the ledger's transactions run on the event loop only when nothing makes them wait:
one that must wait for the write lock waits on a thread, with the loop free."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from agentkeep.budget.ledger import Ledger
from agentkeep.budget.records import Entry
from agentkeep.budget.tables import ledger
from agentkeep.budget.transactor import Conn, Transactor
from agentkeep.stores.sql import SQLStore

WAIT_S = 10.0
BLOCKED_S = 0.5  # a turn of the loop this slow means something on it waited for the lock


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLStore]:
    opened = SQLStore(f"sqlite:///{tmp_path}/agentkeep.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def _count(conn: Conn) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(ledger)).scalar_one())


async def test_a_write_waits_for_another_connections_lock_off_the_loop(store: SQLStore, tmp_path: Path) -> None:
    book = Ledger(store.engine)
    transactor = Transactor(store.engine)
    other = sqlite3.connect(tmp_path / "agentkeep.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process mid-write
        task = asyncio.create_task(book.settle(Entry("run-1", "alice", "s1", "a", "model", "m", 1, 2, 5), None))
        for _ in range(20):
            started = time.monotonic()
            await asyncio.sleep(0.01)
            assert time.monotonic() - started < BLOCKED_S, "the write blocked the event loop while it waited"
            assert not task.done(), "the write finished while another connection held the write lock"
        assert await transactor.read(_count) == 0  # reads do not wait for writers (WAL)
        other.execute("COMMIT")
        await asyncio.wait_for(task, WAIT_S)
    finally:
        other.close()
        book.close()
    try:
        assert await transactor.read(_count) == 1
    finally:
        transactor.close()


async def test_a_cancelled_settle_that_waited_still_lands_before_the_cancel(store: SQLStore, tmp_path: Path) -> None:
    book = Ledger(store.engine)
    transactor = Transactor(store.engine)
    other = sqlite3.connect(tmp_path / "agentkeep.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the settle must wait for this lock, on a thread
        task = asyncio.create_task(book.settle(Entry("run-1", "alice", "s1", "a", "model", "m", 1, 2, 5), None))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done(), "the cancelled caller returned before its settle ended"
        other.execute("COMMIT")
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT_S)
        assert await transactor.read(_count) == 1, "the settle was lost to the cancellation"
    finally:
        other.close()
        book.close()
        transactor.close()


async def test_a_settle_that_need_not_wait_ends_without_yielding_to_the_loop(store: SQLStore) -> None:
    """No task and no loop turn: the first step of the coroutine is the whole settle."""
    book = Ledger(store.engine)
    settling = book.settle(Entry("run-1", "alice", "s1", "a", "model", "m", 1, 2, 5), None)
    try:
        with pytest.raises(StopIteration) as ended:
            settling.send(None)
        settled = ended.value.value
        assert settled.session_spent_nano == 5 and settled.day_spent_nano == 5
    finally:
        settling.close()
        book.close()
