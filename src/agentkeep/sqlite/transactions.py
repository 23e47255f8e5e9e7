"""SQLite transactions of one process on one file: on the event loop when they need not wait.

Through aiosqlite every statement costs several thread hand-offs (cursor, execute, fetch, close),
each waking the event loop, plus SQLAlchemy's greenlet bridge: most of the CPU a run spent on its
few short transactions. Here a transaction runs on a plain `sqlite3` connection, and BEGIN and
COMMIT go straight to the driver:

    at once     on the event loop, when no other writer of this process holds the file's
                `write_lock` (one per file, shared by every `SQLiteFile` of this process: the
                store's and the ledger's) and `BEGIN IMMEDIATE` gets SQLite's write lock at once
                (this connection has no busy timeout). Holding the write lock in WAL mode, its
                statements and commit wait for no one; the one slow step a commit can take, a WAL
                checkpoint with its fsync, is turned off on that connection and run on a thread
                every `CHECKPOINT_EVERY` commits instead.
    waiting     otherwise it begins on a thread, where a connection with a busy timeout waits for
                the locks. A sync body (`run_waiting`, the ledger's) runs there whole; an async one
                (`begin`, the store's) runs its statements on the loop and ends on a thread, ended
                even when its caller is cancelled in between.

A `precompiled` statement (`plans`) runs straight on the driver; any other runs through SQLAlchemy
on the same connection and transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event

from agentkeep.sqlite.plans import Plan, is_precompiled

__all__ = [
    "CHECKPOINT_EVERY",
    "AsyncTransaction",
    "SQLiteFile",
    "Transaction",
    "WouldWait",
    "configure",
    "is_busy",
    "write_lock",
]

T = TypeVar("T")

CHECKPOINT_EVERY = 200  # commits made on the loop between two WAL checkpoints on a thread
_BUSY_TIMEOUT_MS = 10_000
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def write_lock(database: str) -> threading.Lock:
    """This process's turn to write to the SQLite file `database`: one lock per file, whoever asks.

    SQLite's busy handler makes a waiting writer sleep in steps of milliseconds, which at a few
    writes per run would be most of a run's latency; queueing on this lock costs nothing."""
    key = os.path.realpath(database)
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.Lock())


def is_busy(exc: BaseException | None) -> bool:
    """Whether `exc` (the driver's error, or SQLAlchemy's around it) means another connection holds
    a lock we would wait for."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None and isinstance(exc, sa.exc.DBAPIError):
        code = getattr(exc.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control from the driver: BEGIN (IMMEDIATE) is issued explicitly.
    dbapi_conn.isolation_level = None
    dbapi_conn.execute("PRAGMA journal_mode=WAL")
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process crash loses nothing
    dbapi_conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    dbapi_conn.execute("PRAGMA foreign_keys=ON")


def _never_wait(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def configure(engine: sa.Engine) -> None:
    """Set up an engine on which SQLAlchemy runs SQLite transactions itself (aiosqlite's): WAL, and
    `BEGIN IMMEDIATE` for a transaction begun with the execution option `write=True`, so processes
    sharing the file queue for the write lock instead of failing on a lock upgrade."""
    event.listen(engine, "connect", _pragmas)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


class WouldWait(Exception):
    """Raised by `SQLiteFile.run_at_once`, having changed nothing, when beginning would wait."""


class Transaction:
    """One open transaction: SQLAlchemy's connection around the driver's, which BEGIN opened."""

    def __init__(self, file: SQLiteFile, conn: sa.Connection, driver: Any, *, write: bool, pooled: bool) -> None:
        self._file = file
        self.conn = conn
        self.driver = driver
        self.write = write
        self._pooled = pooled  # a thread's connection goes back to its pool; the loop's stays open

    def execute(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) -> Any:
        """A `FetchedRows` for a precompiled statement, else SQLAlchemy's `CursorResult`."""
        if is_precompiled(statement):
            return self._file.plan(statement, params or {}).execute(self.driver, params or {})
        return self.conn.execute(statement, dict(params) if params else None)

    def end(self, commit: bool) -> None:
        """Commit or roll back; then the connection is free and the write lock passes on."""
        try:
            # A statement run through SQLAlchemy made it track the transaction: let it end it then.
            if self.conn.in_transaction():
                (self.conn.commit if commit else self.conn.rollback)()
            elif self.driver.in_transaction:
                self.driver.execute("COMMIT" if commit else "ROLLBACK")
        finally:
            if self._pooled:
                self.conn.close()  # rolls back whatever is not committed
            else:
                self._file.at_once_free = True
            if self.write:
                self._file.lock.release()


class SQLiteFile:
    """The connections, threads, write lock and statement plans of one user of one SQLite file."""

    def __init__(self, database: str, *, threads: int = 1, name: str = "agentkeep-sqlite") -> None:
        url = sa.URL.create("sqlite", database=database)
        self.lock = write_lock(database)
        self._engine = _engine(url, threads)  # the threads': wait for the locks in SQLite's busy handler
        self._loop_engine = _engine(url, 1)  # the loop's: never waits, never checkpoints
        event.listen(self._loop_engine, "connect", _never_wait)
        self._at_once: sa.Connection | None = None  # opened on first use, kept open
        self._at_once_driver: Any = None
        self.at_once_free = True  # False while a transaction (or a suspended async one) holds it
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._commits = 0
        self._checkpoint: asyncio.Future[None] | None = None
        self._turn = asyncio.Lock()
        # (id, parameter names) → plan; each entry holds its statement, so the id stays its own.
        self._plans: dict[tuple[int, tuple[str, ...]], tuple[sa.Executable, Plan]] = {}

    def plan(self, statement: sa.Executable, parameters: Mapping[str, Any]) -> Plan:
        """The compiled form of a `precompiled` statement for these parameter names."""
        keys = tuple(parameters)
        cached = self._plans.get((id(statement), keys))
        if cached is None:
            cached = self._plans[id(statement), keys] = (statement, Plan(statement, keys))
        return cached[1]

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    # --- beginning and ending ---

    def begin_at_once(self, *, write: bool) -> Transaction | None:
        """A transaction begun here and now on the loop's connection, or None if beginning it would wait."""
        if write and not self.lock.acquire(blocking=False):
            return None
        if not self.at_once_free:
            if write:
                self.lock.release()
            return None
        try:
            if self._at_once is None:
                self._at_once = self._loop_engine.connect()
                self._at_once_driver = _driver(self._at_once)
            self._at_once_driver.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except BaseException as exc:
            if write:
                self.lock.release()
            if is_busy(exc):
                return None
            raise
        self.at_once_free = False
        return Transaction(self, self._at_once, self._at_once_driver, write=write, pooled=False)

    def begin_waiting(self, *, write: bool) -> Transaction:
        """On a thread: a transaction on a pooled connection, waiting for the locks as long as it takes."""
        if write:
            self.lock.acquire()
        try:
            conn = self._engine.connect()
            try:
                driver = _driver(conn)
                driver.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except BaseException:
                conn.close()
                raise
        except BaseException:
            if write:
                self.lock.release()
            raise
        return Transaction(self, conn, driver, write=write, pooled=True)

    def begin_on_thread(self, *, write: bool) -> Future[Transaction]:
        """`begin_waiting` on a thread; its future, unlike an awaiting task, survives a cancel once it runs."""
        return self._threads.submit(self.begin_waiting, write=write)

    def ended_on_loop(self) -> None:
        """Count a commit made on the loop; every `CHECKPOINT_EVERY`-th starts a checkpoint on a thread."""
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0 and (self._checkpoint is None or self._checkpoint.done()):
            self._checkpoint = asyncio.get_running_loop().run_in_executor(self._threads, self._checkpoint_wal)

    def _checkpoint_wal(self) -> None:
        pooled = self._engine.raw_connection()
        try:
            driver = pooled.driver_connection
            assert driver is not None
            driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            pooled.close()

    # --- a synchronous body (the ledger's) ---

    def run_at_once(self, body: Callable[[Transaction], T], *, write: bool) -> T:
        """Run `body` in a transaction on the loop, without suspending; `WouldWait` if it would wait."""
        tx = self.begin_at_once(write=write)
        if tx is None:
            raise WouldWait
        try:
            result = body(tx)
        except BaseException as exc:
            tx.end(commit=False)
            if is_busy(exc):
                raise WouldWait from None
            raise
        tx.end(commit=True)
        if write:
            self.ended_on_loop()
        return result

    async def run_waiting(self, body: Callable[[Transaction], T], *, write: bool) -> T:
        """Run `body` in a transaction on a thread, which waits for the locks."""
        return await self.call(self._run_on_thread, body, write)

    def _run_on_thread(self, body: Callable[[Transaction], T], write: bool) -> T:
        tx = self.begin_waiting(write=write)
        try:
            result = body(tx)
        except BaseException:
            tx.end(commit=False)
            raise
        tx.end(commit=True)
        return result

    # --- an async body (the store's) ---

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncTransaction]:
        """A write transaction for async code, committed if the block completes, rolled back if it raises.

        This process's async writers take turns on an asyncio lock first: one that began on a thread
        holds the write lock across its awaits, and a second queued behind it on the threads would
        hold up its end."""
        async with self._turn:
            conn = AsyncTransaction(self)
            try:
                yield conn
            except BaseException:
                await conn.end(commit=False)
                raise
            await conn.end(commit=True)

    def close(self) -> None:
        """Wait for the threads' work (a checkpoint in flight), then close every connection."""
        self._threads.shutdown(wait=True)
        if self._at_once is not None:
            self._at_once.close()
            self._at_once = None
        self._engine.dispose()
        self._loop_engine.dispose()


class AsyncTransaction:
    """`SQLiteFile.begin`'s transaction: the part of `AsyncConnection` the store's writers use.

    `execute` returns rows already fetched, as aiosqlite's does. The transaction begins with its
    first statement.
    """

    def __init__(self, file: SQLiteFile) -> None:
        self._file = file
        self._tx: Transaction | None = None
        self._begun: Future[Transaction] | None = None  # a begin on a thread, which may outlive a cancel

    async def execute(self, statement: sa.Executable, parameters: Mapping[str, Any] | None = None) -> Any:
        result = (self._tx or await self._open()).execute(statement, parameters)
        if isinstance(result, sa.CursorResult) and result.returns_rows:
            return result.freeze()()
        return result

    async def run_sync(self, fn: Callable[[sa.Connection], T]) -> T:
        tx = self._tx or await self._open()
        return await self._file.call(fn, tx.conn)  # DDL, for the migrations: off the loop

    async def _open(self) -> Transaction:
        self._tx = self._file.begin_at_once(write=True)
        if self._tx is not None:
            return self._tx
        self._begun = self._file.begin_on_thread(write=True)
        self._tx = await asyncio.wrap_future(self._begun)
        return self._tx

    async def end(self, *, commit: bool) -> None:
        if self._begun is None:  # begun on the loop, or never begun
            if self._tx is not None:
                self._tx.end(commit)
                self._file.ended_on_loop()
            return
        # Shielded: a cancelled caller must not leave its transaction open for the next writer.
        await asyncio.shield(self._end_waiting(commit))

    async def _end_waiting(self, commit: bool) -> None:
        begun = self._begun
        assert begun is not None
        if begun.cancelled():  # a cancel came before the thread began it: nothing is open
            return
        try:
            tx = await asyncio.wrap_future(begun)  # it may still be waiting for the locks
        except (Exception, asyncio.CancelledError):
            return  # it failed to begin, or never ran: it holds nothing
        await self._file.call(tx.end, commit)


def _driver(conn: sa.Connection) -> Any:
    """The `sqlite3` connection under `conn`, where BEGIN is issued: SQLAlchemy, which has no "begin"
    listener on these engines, joins that transaction when a statement runs through it (its own
    BEGIN is a no-op for sqlite3), and then ends it itself."""
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver


def _engine(url: sa.URL, pool_size: int) -> sa.Engine:
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=0, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _pragmas)
    return engine
