"""One transaction of the ledger, run the fastest safe way for each database.

The ledger writes two short transactions around every model request, so their fixed cost matters.
A transaction is a synchronous body that runs its statements through a `Conn`:

- PostgreSQL: the store's async engine runs the body (`AsyncConnection.run_sync`), retried on a
  deadlock or serialization failure.
- SQLite: a worker thread runs the whole body on a plain `sqlite3` connection to the same file,
  each statement compiled once by SQLAlchemy and then executed by the driver directly. Through
  aiosqlite every statement costs several thread hand-offs (~8 ms a settle on a loaded machine),
  and SQLAlchemy's per-execution work costs more than SQLite's own; this way a transaction is one
  hand-off and a few tens of microseconds of SQL. Writes open with `BEGIN IMMEDIATE`, so processes
  sharing the file queue for the write lock instead of failing on a lock upgrade, like the store.
  Within a process, every writer of a file (the ledger's threads, the store's writer) first takes
  that file's `sqlite_write_lock`: SQLite's busy handler would make a waiting writer sleep in steps
  of milliseconds, which at a few writes per run is most of a run's latency.
  A transaction that can begin without waiting (the lock is free, SQLite's lock too) skips even
  the hand-off: it runs on the event loop, on a connection with no busy timeout and no automatic
  WAL checkpoint (its fsync), which a thread runs every `CHECKPOINT_EVERY` commits instead. In WAL
  mode nothing else in a transaction waits once it has begun.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["CHECKPOINT_EVERY", "Conn", "Rows", "Transactor", "sqlite_busy", "sqlite_write_lock"]

T = TypeVar("T")
_RETRYABLE = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure
_SQLITE_THREADS = 4
_NAMED_SQLITE = sqlite.dialect(paramstyle="named")
CHECKPOINT_EVERY = 200  # commits made on the loop between two WAL checkpoints on a thread
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def sqlite_write_lock(database: str) -> threading.Lock:
    """This process's turn to write to the SQLite file `database`: one lock per file, whoever asks."""
    key = os.path.realpath(database)
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.Lock())


def sqlite_busy(exc: BaseException | None) -> bool:
    """Whether `exc` (the driver's error) means another connection holds a lock we would wait for."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class _WouldWait(Exception):
    """Raised on the loop by a transaction that must wait: it runs on a thread instead."""


class Rows(Protocol):
    """What a body reads back from a statement."""

    @property
    def rowcount(self) -> int: ...

    def first(self) -> Sequence[Any] | None: ...

    def all(self) -> Sequence[Sequence[Any]]: ...

    def scalar_one(self) -> Any: ...


class Conn(Protocol):
    """Where a body runs its statements; the transaction around it is the `Transactor`'s."""

    def execute(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) -> Rows: ...


Body = Callable[[Conn], T]
_Prepared = tuple[sa.Executable, str, dict[str, Any]]  # the statement, its SQL, its literal values


class Transactor:
    """Runs transaction bodies against the database behind `engine`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sqlite: sa.Engine | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._compiled: dict[int, _Prepared] = {}
        self._write_lock = threading.Lock()
        self._at_once: sqlite3.Connection | None = None  # the event loop's connection, opened on first use
        self._commits = 0
        self._checkpoint: asyncio.Future[None] | None = None
        database = engine.url.database or ""
        if self.dialect == "sqlite" and database and database != ":memory:":
            self._sqlite = _sqlite_engine(engine.url.set(drivername="sqlite"))
            self._write_lock = sqlite_write_lock(database)
            self._threads = ThreadPoolExecutor(_SQLITE_THREADS, thread_name_prefix="agentkeep-ledger")

    def prepare(self, statement: sa.Executable) -> None:
        """Compile a statement run on every request once, ahead of time (SQLite)."""
        compiled = cast(sa.ClauseElement, statement).compile(dialect=_NAMED_SQLITE)
        self._compiled[id(statement)] = (statement, str(compiled), dict(compiled.params))

    async def write(self, body: Body[T], tries: int = 5, *, finish: bool = False) -> T:
        """Run `body` in a write transaction; committed if it returns, rolled back if it raises.

        With `finish`, a caller cancelled meanwhile still sees the transaction end before its
        `CancelledError` (money must add up). One run at once on the loop never suspends, so it can
        not be cancelled midway and needs no task of its own: that costs a loop turn per write.
        """
        if self._threads is not None:
            try:
                return self._run_at_once(body, write=True)
            except _WouldWait:
                pass
        waiting = self._write_waiting(body, tries)
        return await (_finish(waiting) if finish else waiting)

    async def _write_waiting(self, body: Body[T], tries: int) -> T:
        if self._threads is not None:
            return await asyncio.get_running_loop().run_in_executor(self._threads, self._run_sqlite, body, True)
        for attempt in range(1, tries + 1):
            try:
                async with self.engine.execution_options(write=True).begin() as conn:
                    return await conn.run_sync(lambda sync: body(_SAConn(sync)))
            except sa.exc.DBAPIError as exc:
                code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
                if code not in _RETRYABLE or attempt == tries:
                    raise
        raise AssertionError("unreachable")

    async def read(self, body: Body[T]) -> T:
        """Run `body` in a read-only transaction."""
        if self._threads is not None:
            try:
                return self._run_at_once(body, write=False)
            except _WouldWait:
                return await asyncio.get_running_loop().run_in_executor(self._threads, self._run_sqlite, body, False)
        async with self.engine.connect() as conn:
            return await conn.run_sync(lambda sync: body(_SAConn(sync)))

    def _run_at_once(self, body: Body[T], *, write: bool) -> T:
        """On the event loop; raises `_WouldWait`, having changed nothing, if it would have to wait."""
        if write and not self._write_lock.acquire(blocking=False):
            raise _WouldWait
        try:
            if self._at_once is None:
                self._at_once = _connect_at_once(self.engine.url.database or "")
            result = _transaction(self._at_once, body, self._compiled, write=write)
        except sqlite3.OperationalError as exc:
            if sqlite_busy(exc):
                raise _WouldWait from None
            raise
        finally:
            if write:
                self._write_lock.release()
        if write:
            self._commits += 1
            if self._commits % CHECKPOINT_EVERY == 0 and (self._checkpoint is None or self._checkpoint.done()):
                self._checkpoint = asyncio.get_running_loop().run_in_executor(self._threads, self._checkpoint_wal)
        return result

    def _run_sqlite(self, body: Body[T], write: bool) -> T:
        """On a worker thread, which waits for the locks."""
        assert self._sqlite is not None
        with self._write_lock if write else contextlib.nullcontext():
            pooled = self._sqlite.raw_connection()
            try:
                assert pooled.driver_connection is not None
                return _transaction(pooled.driver_connection, body, self._compiled, write=write)
            finally:
                pooled.close()

    def _checkpoint_wal(self) -> None:
        assert self._sqlite is not None
        pooled = self._sqlite.raw_connection()
        try:
            assert pooled.driver_connection is not None
            pooled.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            pooled.close()

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True)
        if self._at_once is not None:
            self._at_once.close()
            self._at_once = None
        if self._sqlite is not None:
            self._sqlite.dispose()


class _SAConn:
    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def execute(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) -> Rows:
        return self._conn.execute(statement, dict(params) if params else None)


class _SQLiteRows:
    def __init__(self, cursor: Any) -> None:
        self._rows: list[tuple[Any, ...]] = cursor.fetchall()
        self.rowcount: int = cursor.rowcount

    def first(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def all(self) -> list[tuple[Any, ...]]:
        return self._rows

    def scalar_one(self) -> Any:
        if len(self._rows) != 1:
            raise sa.exc.NoResultFound(f"expected one row, got {len(self._rows)}")
        return self._rows[0][0]


class _SQLiteConn:
    def __init__(self, driver: Any, compiled: dict[int, _Prepared]) -> None:
        self._driver = driver
        self._compiled = compiled

    def execute(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) -> Rows:
        prepared = self._compiled.get(id(statement))
        if prepared is not None and prepared[0] is statement:
            return _SQLiteRows(self._driver.execute(prepared[1], {**prepared[2], **(params or {})}))
        element = cast(sa.ClauseElement, statement)
        compiled = element.compile(dialect=_NAMED_SQLITE, compile_kwargs={"render_postcompile": True})
        return _SQLiteRows(self._driver.execute(str(compiled), {**compiled.params, **(params or {})}))


async def _finish(work: Awaitable[T]) -> T:
    """Await `work` to its end even when the caller is cancelled meanwhile, then re-raise."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise


def _transaction(driver: Any, body: Body[T], compiled: dict[int, _Prepared], *, write: bool) -> T:
    driver.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        result = body(_SQLiteConn(driver, compiled))
    except BaseException:
        with contextlib.suppress(Exception):
            driver.execute("ROLLBACK")
        raise
    driver.execute("COMMIT")
    return result


def _connect_at_once(database: str) -> sqlite3.Connection:
    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=0")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"check_same_thread": False}, pool_size=_SQLITE_THREADS, max_overflow=0)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver: the transactor issues BEGIN IMMEDIATE itself. The
        # store has put the file in WAL mode already; that setting lives in the file.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        dbapi_conn.execute("PRAGMA busy_timeout=10000")

    return engine
