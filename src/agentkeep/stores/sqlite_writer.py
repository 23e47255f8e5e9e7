"""SQLite write transactions on plain `sqlite3` connections: on the event loop when nothing would
make them wait, else on one dedicated thread.

Through aiosqlite every statement costs several thread hand-offs (cursor, execute, fetch, close),
each waking the event loop, plus SQLAlchemy's greenlet bridge: most of the CPU a run spends on its
two transactions. Here a transaction runs on the event loop, with SQLAlchemy's sync engine on the
stdlib driver, whenever it can begin without waiting: no other writer of this process holds the
file's `sqlite_write_lock` (shared with the budget ledger) and `BEGIN IMMEDIATE` gets SQLite's
write lock at once (its connection has no busy timeout). Holding the write lock in WAL mode, its
statements and commit wait for no one; the one slow step a commit can take, a WAL checkpoint with
its fsync, is turned off on that connection and run on the thread every `CHECKPOINT_EVERY` commits.
Otherwise the transaction begins on the thread, where a connection with a busy timeout waits for
the lock; its statements still run on the loop, and its end on the thread, whose queue keeps it
after the begin even when the caller is cancelled in between.

A statement marked `precompiled` (see `precompiled()`: a constant the store builds once) is compiled
once per set of parameter names and then runs straight on the `sqlite3` connection: SQLAlchemy's
per-execution work (cache key, execution context, result wrapping) was most of a run's store CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite

from agentkeep.budget.transactor import CHECKPOINT_EVERY, sqlite_busy, sqlite_write_lock

__all__ = ["SQLiteWriter", "WriteConnection", "precompiled"]

T = TypeVar("T")
E = TypeVar("E", bound=sa.Executable)

_PRECOMPILED = "agentkeep_precompiled"
_DIALECT = sqlite.dialect()


def precompiled(statement: E) -> E:
    """Mark a statement built once (at import, or once per store) for `WriteConnection`'s direct
    path; elsewhere it runs as any statement. Its values are parameters or constants of its own."""
    return statement.execution_options(**{_PRECOMPILED: True})


class _Plan:
    """A statement compiled for SQLite: its SQL, and how to order and convert its parameters and rows."""

    def __init__(self, statement: sa.Executable, keys: tuple[str, ...]) -> None:
        compiled = cast(
            sa.sql.compiler.SQLCompiler,
            cast(sa.ClauseElement, statement).compile(dialect=_DIALECT, column_keys=list(keys)),
        )
        self.sql = compiled.string
        # (the caller's parameter name, or None for a constant of the statement; the constant; its conversion)
        self.params: list[tuple[str | None, Any, Callable[[Any], Any] | None]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            convert = bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
            if bind.required and name not in keys:
                raise ValueError(f"no value for parameter {name!r} of a precompiled statement")
            self.params.append((name, None, convert) if name in keys else (None, bind.effective_value, convert))
        columns = statement.selected_columns if isinstance(statement, sa.Select) else ()
        self.returns_rows = isinstance(statement, sa.Select)
        self.convert_rows = [c.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None) for c in columns]

    def execute(self, driver: Any, parameters: Mapping[str, Any]) -> _Rows:
        values = []
        for name, constant, convert in self.params:
            value = constant if name is None else parameters[name]
            values.append(value if convert is None else convert(value))
        cursor = driver.execute(self.sql, values)
        if not self.returns_rows:
            return _Rows([], cursor.rowcount)
        rows = cursor.fetchall()
        if any(self.convert_rows):
            rows = [tuple(c(v) if c else v for c, v in zip(self.convert_rows, row, strict=True)) for row in rows]
        return _Rows(rows, cursor.rowcount)


class _Rows:
    """The part of a `Result` the store reads from a precompiled statement: fetched rows, rowcount."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]

    def scalar_one(self) -> Any:
        if not self._rows:
            raise sa.exc.NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise sa.exc.MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0][0]


class WriteConnection:
    """One write transaction: the part of `AsyncConnection` the store's writers use.

    `execute` returns a `Result` whose rows are already fetched, like aiosqlite's.
    """

    def __init__(self, writer: SQLiteWriter) -> None:
        self._writer = writer
        self._conn: sa.Connection | None = None  # opened by the first statement
        self.on_loop = False  # whether it began on the event loop (else on the writer thread)

    async def execute(self, statement: sa.Executable, parameters: Mapping[str, Any] | None = None) -> sa.Result[Any]:
        conn = self._conn or await self._open()
        if statement.get_execution_options().get(_PRECOMPILED):
            driver = conn.connection.driver_connection
            return cast(
                sa.Result[Any], self._writer.plan(statement, parameters or {}).execute(driver, parameters or {})
            )
        result = conn.execute(statement, dict(parameters) if parameters else None)
        return result.freeze()() if result.returns_rows else result

    async def run_sync(self, fn: Callable[[sa.Connection], T]) -> T:
        conn = self._conn or await self._open()
        return await self._writer.call(fn, conn)  # DDL, for the migrations: off the loop

    async def _open(self) -> sa.Connection:
        self._conn = self._writer.begin_at_once()
        if self._conn is not None:
            self.on_loop = True
            return self._conn
        return await self._writer.call(self._begin_waiting)

    def _begin_waiting(self) -> sa.Connection:
        # On the thread; sets `_conn` itself, so an `end` queued after it sees the transaction even
        # if the caller was cancelled meanwhile.
        self._writer.lock.acquire()
        try:
            self._conn = _begin(self._writer.engine)
        except BaseException:
            self._writer.lock.release()
            raise
        return self._conn

    def end(self, commit: bool) -> None:
        """Commit or roll back; then the connection returns to its pool and the lock to the next writer."""
        if self._conn is None:
            return
        try:
            if commit:
                self._conn.commit()
        finally:
            self._conn.close()  # rolls back what is not committed
            self._conn = None
            self._writer.lock.release()


class SQLiteWriter:
    """The connections and the writer thread for one SQLite file."""

    def __init__(self, url: sa.URL, configure: Callable[[sa.Engine], None]) -> None:
        url = url.set(drivername="sqlite")
        self.engine = _engine(url, configure)  # the thread's: waits for the lock in SQLite's busy handler
        self._at_once = _engine(url, configure)  # the loop's: never waits, never checkpoints
        event.listen(self._at_once, "connect", _never_wait)
        self.lock = sqlite_write_lock(url.database or "")
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="agentkeep-store")
        self._commits = 0
        self._checkpoint: asyncio.Future[None] | None = None
        # (id, parameter names) → plan; each entry holds its statement, so the id stays its own.
        self._plans: dict[tuple[int, tuple[str, ...]], tuple[sa.Executable, _Plan]] = {}

    def plan(self, statement: sa.Executable, parameters: Mapping[str, Any]) -> _Plan:
        """The compiled form of a `precompiled` statement for these parameter names."""
        keys = tuple(parameters)
        cached = self._plans.get((id(statement), keys))
        if cached is None:
            cached = self._plans[id(statement), keys] = (statement, _Plan(statement, keys))
        return cached[1]

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def begin_at_once(self) -> sa.Connection | None:
        """A write transaction begun here and now, or None if beginning it would wait."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            return _begin(self._at_once)
        except BaseException as exc:
            self.lock.release()
            if isinstance(exc, sa.exc.OperationalError) and sqlite_busy(exc.orig):
                return None
            raise

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[WriteConnection]:
        """A transaction, committed if the block completes and rolled back if it raises."""
        conn = WriteConnection(self)
        try:
            yield conn
        except BaseException:
            await self._end(conn, commit=False)
            raise
        await self._end(conn, commit=True)

    async def _end(self, conn: WriteConnection, *, commit: bool) -> None:
        if conn.on_loop:
            conn.end(commit)
            self._commits += 1
            if self._commits % CHECKPOINT_EVERY == 0 and (self._checkpoint is None or self._checkpoint.done()):
                self._checkpoint = asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint_wal)
            return
        # Shielded: a cancelled caller must not leave its transaction open for the next writer.
        await asyncio.shield(self.call(conn.end, commit))

    def _checkpoint_wal(self) -> None:
        pooled = self.engine.raw_connection()
        try:
            driver = pooled.driver_connection
            assert driver is not None
            driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            pooled.close()

    async def close(self) -> None:
        if self._checkpoint is not None:
            await self._checkpoint
        await self.call(self._dispose)
        self._thread.shutdown(wait=True)

    def _dispose(self) -> None:
        self.engine.dispose()
        self._at_once.dispose()


def _engine(url: sa.URL, configure: Callable[[sa.Engine], None]) -> sa.Engine:
    engine = sa.create_engine(url, pool_size=1, max_overflow=0, connect_args={"check_same_thread": False})
    configure(engine)
    return engine


def _never_wait(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def _begin(engine: sa.Engine) -> sa.Connection:
    # The "begin" listener the store installs makes this transaction's BEGIN IMMEDIATE.
    conn = engine.connect().execution_options(write=True)
    try:
        conn.begin()
    except BaseException:
        conn.close()
        raise
    return conn
