"""How agentkeep configures DBOS: where its system database lives, who this process is, which code it runs.

    system database   beside agentkeep's: `./data/agentkeep.db` → `./data/agentkeep-dbos.db` (WAL,
                      synchronous=NORMAL: a killed process loses nothing); on PostgreSQL the same
                      database, in its own schema `dbos`
    executor id       `host:port` (AGENTKEEP_EXECUTOR_ID overrides): the same after a restart, so a
                      restarted process resumes its own runs at once
    app version       agentkeep's version + a hash of the TARGET file (AGENTKEEP_APP_VERSION
                      overrides). DBOS resumes a run only on the version that started it: a
                      redeploy with changed agent code leaves older runs waiting (docs/durable.md)
    queue             `agentkeep_runs` (QUEUE): every background run and task, partitioned per user

Nothing here imports dbos at module level.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agentkeep import __version__
from agentkeep.config import Settings
from agentkeep.errors import ConfigError
from agentkeep.stores.backup import durable_sidecar

__all__ = ["QUEUE", "Identity", "dbos_config", "identity", "route_dbos_logs", "system_database_url"]

APP_NAME = "agentkeep"
QUEUE = "agentkeep_runs"
_SQLITE_POOL = {"pool_size": 20, "max_overflow": 0, "pool_timeout": 30}
_PG_POOL = 10


@dataclass(frozen=True)
class Identity:
    """Who this process is to DBOS."""

    executor_id: str
    version: str


def identity(settings: Settings, *, source: Path | None, port: int) -> Identity:
    """This process's executor id and application version (see the module docstring)."""
    executor_id = settings.executor_id or f"{socket.gethostname()}:{port}"
    if settings.app_version:
        return Identity(executor_id, settings.app_version)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12] if source is not None else "none"
    return Identity(executor_id, f"agentkeep-{__version__}+{digest}")


def system_database_url(database_url: str) -> str:
    """The DBOS system database for agentkeep's `database_url`."""
    url = sa.make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:":
            raise ConfigError("background runs need a database file: set AGENTKEEP_DATABASE_URL=sqlite:///PATH")
        # The same name `agentkeep backup` and `restore` carry along with the database.
        return f"sqlite:///{durable_sidecar(Path(database))}"
    if backend in {"postgresql", "postgres"}:
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ConfigError(f"unsupported database {backend!r} for background runs")


def dbos_config(settings: Settings, me: Identity) -> dict[str, Any]:
    """The `DBOSConfig` for this process."""
    url = system_database_url(settings.database_url.get_secret_value())
    config: dict[str, Any] = {
        "name": APP_NAME,
        "system_database_url": url,
        "application_version": me.version,
        "executor_id": me.executor_id,
        "log_level": "WARNING",
    }
    if url.startswith("sqlite:///"):
        config["system_database_engine"] = _sqlite_engine(Path(url.removeprefix("sqlite:///")))
    else:
        # Each checkpoint holds a connection for one short transaction; a fleet shares max_connections.
        config["sys_db_pool_size"] = _PG_POOL
    return config


def _sqlite_engine(path: Path) -> sa.Engine:
    """DBOS's own SQLite set-up, in WAL mode with synchronous=NORMAL (DBOS leaves a rollback journal)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:  # WAL is a property of the file: set it before DBOS opens it
        conn.execute("PRAGMA journal_mode=WAL")
    engine = sa.create_engine(f"sqlite:///{path}", **_SQLITE_POOL)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"  # as DBOS does: writers serialise instead of failing
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    return engine


def route_dbos_logs() -> None:
    """Send DBOS's log records through agentkeep's logging (JSON lines), warnings and above only.

    DBOS adds its own console handler unless its logger already has one; a NullHandler that
    propagates to the root logger takes that place. A cancelled run is an outcome, not an error:
    what DBOS logs about one is dropped.
    """
    logger = logging.getLogger("dbos")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    if not any(isinstance(f, _CancelledRunFilter) for f in logger.filters):
        logger.addFilter(_CancelledRunFilter())
    logger.propagate = True
    logger.setLevel(logging.WARNING)


class _CancelledRunFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if "was cancelled during execution" in record.getMessage():
            return False
        error = record.exc_info[1] if record.exc_info else None
        return type(error).__name__ != "DBOSAwaitedWorkflowCancelledError"
