"""The database behind the stores: its engines, its transactions, its schema and its lifetime.

`Database` is what every module of `agentkeep.stores` stands on: `SQLStore` (sessions and runs),
`KeyStore` (API keys) and `Workers` (the durable engine's heartbeats) each run their statements
through its `writer()` and `reader()`, and nothing outside this package gets a connection from it
(the budget ledger, on its own tables, runs its transactions on `engine`).

SQLite: reads through aiosqlite, writes on a file's plain `sqlite3` connections (`agentkeep.sqlite`),
and a shared lock on `<database>.lock` while open, which tells `agentkeep restore` the file is in
use. PostgreSQL: asyncpg, and an advisory lock around the migrations so two processes starting at
once apply each migration once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from agentkeep.errors import AgentkeepError, ConfigError, StartupFailed
from agentkeep.sqlite import SQLiteFile, configure
from agentkeep.stores import schema
from agentkeep.stores.backup import BackupError, DatabaseLock

__all__ = ["Database", "async_url", "describe_database", "sqlite_file"]

_PG_MIGRATION_LOCK = 0x6167_6B70  # any constant shared by every agentkeep process


def async_url(url: str) -> sa.URL:
    """Map the user's URL to the async driver agentkeep uses for it."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"AGENTKEEP_DATABASE_URL is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigError(
        f"unsupported database {backend!r} in AGENTKEEP_DATABASE_URL: use sqlite:///PATH or postgresql://…"
    )


def describe_database(url: str | sa.URL) -> str:
    """The database as a person may see it: no user name or password; a SQLite file as its absolute path."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return "an unparsable URL"
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        file = sqlite_file(parsed)
        return f"sqlite:///{file}" if file is not None else "sqlite (in memory)"
    bare = parsed._replace(drivername=backend, username=None, password=None)
    return bare.render_as_string(hide_password=True)


def sqlite_file(url: str | sa.URL) -> Path | None:
    """The absolute path of a SQLite database file, or None (another database, or in memory)."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database).resolve()


def _cannot_open(url: sa.URL, exc: Exception) -> StartupFailed:
    """One line for a database that did not answer: its reason, the setting to check, never the password."""
    cause: BaseException = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    reason = (str(cause).strip().splitlines() or [""])[0] or type(cause).__name__
    if url.password:
        reason = reason.replace(str(url.password), "***")
    fix = "and that its directory is writable" if url.get_backend_name() == "sqlite" else "and that the server is up"
    return StartupFailed(
        f"cannot open the database {describe_database(url)} ({reason}); check AGENTKEEP_DATABASE_URL {fix}"
    )


class Database:
    """A SQLite or PostgreSQL database, migrated when opened."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.dialect = self.url.get_backend_name()
        self._pool_size = pool_size
        self._engine: AsyncEngine | None = None
        self._sqlite: SQLiteFile | None = None  # a SQLite file's write transactions
        self._write_turn = asyncio.Lock()
        self._lock: DatabaseLock | None = None  # SQLite: tells `agentkeep restore` the file is in use

    @property
    def engine(self) -> AsyncEngine:
        """The database's engine, which the budget ledger runs its own transactions on."""
        if self._engine is None:
            raise RuntimeError("store is not open")
        return self._engine

    @contextlib.asynccontextmanager
    async def writer(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction (`BEGIN IMMEDIATE` on SQLite), for the modules of `agentkeep.stores`.

        On SQLite this process's writers take turns on an asyncio lock first: SQLite admits one
        writer per file anyway, and a writer waiting in its busy handler sleeps in coarse steps,
        which under concurrency costs far more than queueing here.
        """
        if self._sqlite is not None:
            async with self._sqlite.begin() as conn:
                # It offers `execute` and `run_sync`, the part of AsyncConnection writers use.
                yield cast(AsyncConnection, conn)
            return
        async with contextlib.AsyncExitStack() as stack:
            if self.dialect == "sqlite":
                await stack.enter_async_context(self._write_turn)
            yield await stack.enter_async_context(self.engine.execution_options(write=True).begin())

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads, for the modules of `agentkeep.stores`; in WAL mode it never waits for a writer."""
        async with self.engine.connect() as conn:
            yield conn

    async def open(self) -> None:
        """Connect and bring the schema up to date.

        A database that does not answer (refused, unknown host or database, wrong password, a file
        that cannot be created) is `StartupFailed`: one line naming AGENTKEEP_DATABASE_URL, which
        `agentkeep serve` prints before anything listens.
        """
        try:
            await self._open()
        except AgentkeepError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise _cannot_open(self.url, exc) from None

    async def _open(self) -> None:
        if self.dialect == "sqlite":
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                self._hold_database_lock(Path(database))
                self._sqlite = SQLiteFile(database, name="agentkeep-store")
            self._engine = create_async_engine(self.url, pool_size=self._pool_size, max_overflow=0)
            configure(self._engine.sync_engine)
        else:
            self._engine = create_async_engine(
                self.url, pool_size=self._pool_size, max_overflow=self._pool_size, pool_pre_ping=True
            )
        await self._migrate()

    async def _migrate(self) -> None:
        if await self._schema_is_current():
            return
        async with self.writer() as conn:
            if self.dialect == "postgresql":
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            await conn.run_sync(lambda c: schema.schema_version.create(c, checkfirst=True))
            applied = set((await conn.execute(sa.select(schema.schema_version.c.version))).scalars())
            for number, migration in schema.pending(applied):
                await conn.run_sync(migration)
                await conn.execute(schema.schema_version.insert().values(version=number, applied_at=time.time()))

    async def _schema_is_current(self) -> bool:
        """Whether every migration has run, in one read without the migration lock: the answer on
        every start but a deployment's first, and a cold Lambda container's start is one of them.
        A new database (no version table yet) answers no, and the locked path above creates it."""
        try:
            async with self.engine.connect() as conn:
                applied = set((await conn.execute(sa.select(schema.schema_version.c.version))).scalars())
        except sa.exc.DBAPIError:
            return False
        return not schema.pending(applied)

    def _hold_database_lock(self, database: Path) -> None:
        lock = DatabaseLock(database)
        if not lock.acquire(exclusive=False):
            raise BackupError(f"{database} is being restored (agentkeep restore); start again when it has finished")
        self._lock = lock

    async def close(self) -> None:
        """Release every connection."""
        if self._sqlite is not None:
            await asyncio.to_thread(self._sqlite.close)
            self._sqlite = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def ping(self) -> None:
        """Run a real query; raise if the database does not answer."""
        database = self.url.database or ""
        if self.dialect == "sqlite" and database and database != ":memory:":
            # A pooled connection keeps reading a file that was since deleted, replaced or corrupted;
            # a fresh open sees the file as a restarted process would, and needs no pool slot under load.
            await asyncio.to_thread(_probe_sqlite_file, Path(database))
            return
        async with self.engine.connect() as conn:
            await conn.execute(sa.select(sa.func.count()).select_from(schema.schema_version))


def _probe_sqlite_file(path: Path) -> None:
    """Open the database file anew (never creating it) and read from it; raise if that fails."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=1)
    try:
        conn.execute(f"SELECT count(*) FROM {schema.schema_version.name}").fetchone()  # noqa: S608 — a constant
    finally:
        conn.close()
