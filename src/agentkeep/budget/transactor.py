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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Conn", "Rows", "Transactor"]

T = TypeVar("T")
_RETRYABLE = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure
_SQLITE_THREADS = 4
_NAMED_SQLITE = sqlite.dialect(paramstyle="named")


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
        database = engine.url.database or ""
        if self.dialect == "sqlite" and database and database != ":memory:":
            self._sqlite = _sqlite_engine(engine.url.set(drivername="sqlite"))
            self._threads = ThreadPoolExecutor(_SQLITE_THREADS, thread_name_prefix="agentkeep-ledger")

    def prepare(self, statement: sa.Executable) -> None:
        """Compile a statement run on every request once, ahead of time (SQLite)."""
        compiled = cast(sa.ClauseElement, statement).compile(dialect=_NAMED_SQLITE)
        self._compiled[id(statement)] = (statement, str(compiled), dict(compiled.params))

    async def write(self, body: Body[T], tries: int = 5) -> T:
        """Run `body` in a write transaction; committed if it returns, rolled back if it raises."""
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
            return await asyncio.get_running_loop().run_in_executor(self._threads, self._run_sqlite, body, False)
        async with self.engine.connect() as conn:
            return await conn.run_sync(lambda sync: body(_SAConn(sync)))

    def _run_sqlite(self, body: Body[T], write: bool) -> T:
        assert self._sqlite is not None
        pooled = self._sqlite.raw_connection()
        try:
            driver = pooled.driver_connection
            assert driver is not None
            driver.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = body(_SQLiteConn(driver, self._compiled))
            except BaseException:
                with contextlib.suppress(Exception):
                    driver.execute("ROLLBACK")
                raise
            driver.execute("COMMIT")
            return result
        finally:
            pooled.close()

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True)
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
