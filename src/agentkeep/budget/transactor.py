"""One transaction of the ledger, run the fastest safe way for each database.

The ledger writes two short transactions around every model request, so their fixed cost matters.
A transaction is a synchronous body that runs its statements through a `Conn`:

- PostgreSQL: the store's async engine runs the body (`AsyncConnection.run_sync`), retried on a
  deadlock or serialization failure.
- A SQLite file: `agentkeep.sqlite` runs it, as it runs the store's writes: on the event loop when
  it can begin without waiting (the file's write lock is free, SQLite's too), else whole on one of
  a few threads, which wait for the locks. Its hot statements are `precompiled`, so each runs
  straight on the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from agentkeep.sqlite import SQLiteFile, WouldWait

__all__ = ["Conn", "Rows", "Transactor"]

T = TypeVar("T")
_RETRYABLE = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure
_SQLITE_THREADS = 4


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


class Transactor:
    """Runs transaction bodies against the database behind `engine`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sqlite: SQLiteFile | None = None
        database = engine.url.database or ""
        if self.dialect == "sqlite" and database and database != ":memory:":
            self._sqlite = SQLiteFile(database, threads=_SQLITE_THREADS, name="agentkeep-ledger")

    async def write(self, body: Body[T], tries: int = 5, *, finish: bool = False) -> T:
        """Run `body` in a write transaction; committed if it returns, rolled back if it raises.

        With `finish`, a caller cancelled meanwhile still sees the transaction end before its
        `CancelledError` (money must add up). One run at once on the loop never suspends, so it can
        not be cancelled midway and needs no task of its own: that costs a loop turn per write.
        """
        if self._sqlite is not None:
            try:
                return self._sqlite.run_at_once(body, write=True)
            except WouldWait:
                pass
        waiting = self._write_waiting(body, tries)
        return await (_finish(waiting) if finish else waiting)

    async def _write_waiting(self, body: Body[T], tries: int) -> T:
        if self._sqlite is not None:
            return await self._sqlite.run_waiting(body, write=True)
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
        if self._sqlite is not None:
            try:
                return self._sqlite.run_at_once(body, write=False)
            except WouldWait:
                return await self._sqlite.run_waiting(body, write=False)
        async with self.engine.connect() as conn:
            return await conn.run_sync(lambda sync: body(_SAConn(sync)))

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()


class _SAConn:
    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def execute(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) -> Rows:
        return self._conn.execute(statement, dict(params) if params else None)


async def _finish(work: Awaitable[T]) -> T:
    """Await `work` to its end even when the caller is cancelled meanwhile, then re-raise."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise
