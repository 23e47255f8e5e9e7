"""The `Store` on SQLAlchemy Core (async): SQLite through aiosqlite, PostgreSQL through asyncpg.

SQLite's write transactions bypass aiosqlite: they run on one plain connection in one thread
(`stores.sqlite_writer`), where a statement costs one thread hand-off instead of several.

SQLite runs in WAL mode with `BEGIN IMMEDIATE` for writes, so two processes sharing the file
serialise their writes instead of failing on a lock upgrade; PostgreSQL relies on row locks and
conditional updates. The same statements serve both.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from agentkeep.errors import ConfigError, SessionBusy
from agentkeep.stores import reports, schema
from agentkeep.stores.backup import BackupError, DatabaseLock
from agentkeep.stores.base import HourUsage, RunQuery, RunRecord, RunStatus, SessionRecord, Store, Usage
from agentkeep.stores.sqlite_writer import SQLiteWriter, precompiled

_PG_MIGRATION_LOCK = 0x6167_6B70  # any constant shared by every agentkeep process
# A run's outcome is written once: only a run still in one of these may be moved to a final status.
_UNFINISHED = [status.value for status in RunStatus if not status.finished]

# A run's statements, built once with every value a parameter (named `b_…` where a column's own name
# is taken by the SET clause): cheap for SQLAlchemy to cache, and run directly on SQLite's driver.
_s, _h, _r = schema.sessions, schema.session_history, schema.runs
_SESSION = (_s.c.user_id == sa.bindparam("b_user_id"), _s.c.session_id == sa.bindparam("b_session_id"))
_CLAIM = precompiled(
    _s.update()
    .where(*_SESSION, sa.or_(_s.c.busy_run_id.is_(None), _s.c.busy_until < sa.bindparam("b_now")))
    .values(busy_run_id=sa.bindparam("b_run_id"), busy_until=sa.bindparam("b_until"))
)
_INSERT_RUN = precompiled(_r.insert())
_HISTORY = precompiled(
    sa.select(_h.c.messages)
    .where(_h.c.user_id == sa.bindparam("b_user_id"), _h.c.session_id == sa.bindparam("b_session_id"))
    .order_by(_h.c.seq)
)
# `status IN (…)` as ORs: an IN list is expanded per execution, these are plain parameters.
_RECORD_RUN = precompiled(
    _r.update().where(_r.c.run_id == sa.bindparam("b_run_id"), sa.or_(*(_r.c.status == v for v in _UNFINISHED)))
)
_RELEASE = precompiled(
    _s.update()
    .where(*_SESSION, _s.c.busy_run_id == sa.bindparam("b_run_id"))
    .values(busy_run_id=None, busy_until=None, updated_at=sa.bindparam("b_now"))
)
_NEXT_SEQ = precompiled(
    sa.select(sa.func.coalesce(sa.func.max(_h.c.seq), 0) + 1).where(
        _h.c.user_id == sa.bindparam("b_user_id"), _h.c.session_id == sa.bindparam("b_session_id")
    )
)
_APPEND = precompiled(_h.insert())


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
    raise ConfigError(f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://…")


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE can be issued below.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process crash loses nothing
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


class SQLStore(Store):
    """Sessions and runs in SQLite or PostgreSQL."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.dialect = self.url.get_backend_name()
        self._pool_size = pool_size
        self._engine: AsyncEngine | None = None
        self._sqlite_writer: SQLiteWriter | None = None  # a SQLite file's write transactions
        self._write_turn = asyncio.Lock()
        self._lock: DatabaseLock | None = None  # SQLite: tells `agentkeep restore` the file is in use
        self._create_session = precompiled(self._insert_ignore(self.dialect, schema.sessions))

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("store is not open")
        return self._engine

    @contextlib.asynccontextmanager
    async def writer(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction (`BEGIN IMMEDIATE` on SQLite).

        On SQLite this process's writers take turns on an asyncio lock first: SQLite admits one
        writer per file anyway, and a writer waiting in its busy handler sleeps in coarse steps,
        which under concurrency costs far more than queueing here.
        """
        async with contextlib.AsyncExitStack() as stack:
            if self.dialect == "sqlite":
                await stack.enter_async_context(self._write_turn)
            if self._sqlite_writer is not None:
                # It offers `execute` and `run_sync`, the part of AsyncConnection writers use.
                yield cast(AsyncConnection, await stack.enter_async_context(self._sqlite_writer.begin()))
            else:
                yield await stack.enter_async_context(self.engine.execution_options(write=True).begin())

    async def open(self) -> None:
        if self.dialect == "sqlite":
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                self._hold_database_lock(Path(database))
                self._sqlite_writer = SQLiteWriter(self.url, _configure_sqlite)
            self._engine = create_async_engine(self.url, pool_size=self._pool_size, max_overflow=0)
            _configure_sqlite(self._engine.sync_engine)
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
        if self._sqlite_writer is not None:
            await self._sqlite_writer.close()
            self._sqlite_writer = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def ping(self) -> None:
        database = self.url.database or ""
        if self.dialect == "sqlite" and database and database != ":memory:":
            # A pooled connection keeps reading a file that was since deleted, replaced or corrupted;
            # a fresh open sees the file as a restarted process would, and needs no pool slot under load.
            await asyncio.to_thread(_probe_sqlite_file, Path(database))
            return
        async with self.engine.connect() as conn:
            await conn.execute(sa.select(sa.func.count()).select_from(schema.schema_version))

    # --- sessions ---

    async def start_run(self, run: RunRecord, lease_s: float) -> list[bytes]:
        user_id, session_id, run_id = run.user_id, run.session_id, run.run_id
        now = time.time()
        session = {"b_user_id": user_id, "b_session_id": session_id}
        async with self.writer() as conn:
            await conn.execute(
                self._create_session,
                {"user_id": user_id, "session_id": session_id, "created_at": now, "updated_at": now},
            )
            claimed = await conn.execute(
                _CLAIM, {**session, "b_now": now, "b_run_id": run_id, "b_until": now + lease_s}
            )
            if claimed.rowcount != 1:
                raise SessionBusy(f"session {session_id!r} is running another request; retry when it finishes")
            await conn.execute(_INSERT_RUN, _run_row(run))
            return await self._history(conn, user_id, session_id)

    @staticmethod
    def _insert_ignore(dialect: str, table: sa.Table) -> sa.Insert:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing()
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()

    @staticmethod
    async def _history(conn: AsyncConnection, user_id: str, session_id: str) -> list[bytes]:
        rows = await conn.execute(_HISTORY, {"b_user_id": user_id, "b_session_id": session_id})
        return [bytes(r) for r in rows.scalars()]

    async def get_session(self, user_id: str, session_id: str) -> SessionRecord | None:
        s, r = schema.sessions, schema.runs
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(s.c.created_at, s.c.updated_at).where(
                        s.c.user_id == user_id, s.c.session_id == session_id
                    )
                )
            ).first()
            if row is None:
                return None
            history = await self._history(conn, user_id, session_id)
            cost = (
                await conn.execute(
                    sa.select(sa.func.sum(r.c.cost_usd)).where(r.c.user_id == user_id, r.c.session_id == session_id)
                )
            ).scalar()
        return SessionRecord(session_id, user_id, row.created_at, row.updated_at, history, cost)

    async def delete_session(self, user_id: str, session_id: str) -> bool:
        s, h = schema.sessions, schema.session_history
        now = time.time()
        async with self.writer() as conn:
            row = (
                await conn.execute(
                    sa.select(s.c.busy_run_id, s.c.busy_until).where(
                        s.c.user_id == user_id, s.c.session_id == session_id
                    )
                )
            ).first()
            if row is None:
                return False
            if row.busy_run_id is not None and (row.busy_until or 0) >= now:
                raise SessionBusy(f"session {session_id!r} is running a request; delete it when it finishes")
            await conn.execute(h.delete().where(h.c.user_id == user_id, h.c.session_id == session_id))
            await conn.execute(s.delete().where(s.c.user_id == user_id, s.c.session_id == session_id))
            return True

    # --- runs ---

    async def create_run(self, run: RunRecord) -> None:
        async with self.writer() as conn:
            await conn.execute(schema.runs.insert(), _run_row(run))

    async def update_run_status(self, run_id: str, status: RunStatus, *, started_at: float | None = None) -> None:
        values: dict[str, Any] = {"status": status.value}
        if started_at is not None:
            values["started_at"] = started_at
        async with self.writer() as conn:
            await conn.execute(schema.runs.update().where(schema.runs.c.run_id == run_id).values(**values))

    async def finish_run(self, run: RunRecord, *, append_to_session: bytes | None) -> bool:
        now = time.time()
        async with self.writer() as conn:
            row = _run_row(run)
            del row["run_id"]
            recorded = await conn.execute(_RECORD_RUN, {**row, "b_run_id": run.run_id})
            if recorded.rowcount != 1:
                return False  # it finished meanwhile (a cancel came first): that outcome stands, the session untouched
            session = {"b_user_id": run.user_id, "b_session_id": run.session_id}
            released = await conn.execute(_RELEASE, {**session, "b_run_id": run.run_id, "b_now": now})
            # A run whose lease lapsed (and may have been taken over) must not write into the history.
            if append_to_session is not None and released.rowcount == 1:
                next_seq = (await conn.execute(_NEXT_SEQ, session)).scalar_one()
                await conn.execute(
                    _APPEND,
                    {
                        "user_id": run.user_id,
                        "session_id": run.session_id,
                        "seq": next_seq,
                        "run_id": run.run_id,
                        "messages": append_to_session,
                        "created_at": now,
                    },
                )
        return True

    async def get_run(self, user_id: str | None, run_id: str) -> RunRecord | None:
        r = schema.runs
        owner = () if user_id is None else (r.c.user_id == user_id,)
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(r).where(r.c.run_id == run_id, *owner))).first()
        return None if row is None else _run_from_row(row._mapping)

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        return await reports.list_runs(self.engine, query)

    async def usage_by_hour(self, user_id: str, since: float, hours: int) -> list[HourUsage]:
        return await reports.usage_by_hour(self.engine, user_id, since, hours)


def _probe_sqlite_file(path: Path) -> None:
    """Open the database file anew (never creating it) and read from it; raise if that fails."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=1)
    try:
        conn.execute(f"SELECT count(*) FROM {schema.schema_version.name}").fetchone()  # noqa: S608 — a constant
    finally:
        conn.close()


def _run_row(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "user_id": run.user_id,
        "session_id": run.session_id,
        "agent": run.agent,
        "status": run.status.value,
        "input": run.input,
        "metadata": run.metadata,
        "background": run.background,
        "webhook_url": run.webhook_url,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "output": run.output,
        "error_type": run.error_type,
        "error_message": run.error_message,
        "usage": run.usage.as_dict(),
        "cost_usd": run.cost_usd,
        "tools_used": run.tools_used,
        "duration_ms": run.duration_ms,
        "messages": run.messages_json,
        "steps": run.steps_json,
    }


def _run_from_row(row: Any) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        session_id=row["session_id"],
        user_id=row["user_id"],
        agent=row["agent"],
        status=RunStatus(row["status"]),
        input=row["input"],
        created_at=row["created_at"],
        metadata=row["metadata"] or {},
        background=bool(row["background"]),
        webhook_url=row["webhook_url"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        output=row["output"],
        error_type=row["error_type"],
        error_message=row["error_message"],
        usage=Usage.from_dict(row["usage"]),
        cost_usd=row["cost_usd"],
        tools_used=list(row["tools_used"] or []),
        duration_ms=row["duration_ms"],
        messages_json=bytes(row["messages"]) if row["messages"] is not None else None,
        steps_json=bytes(row["steps"]) if row["steps"] is not None else None,
    )
