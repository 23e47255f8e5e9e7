"""Tables and migrations, in SQLAlchemy Core so one definition serves SQLite and PostgreSQL.

Times are UNIX seconds (float) so both databases compare them the same way. Migrations are an
ordered list; each runs once, in its own transaction, and records its number in `schema_version`.
To change the schema, append a migration: never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentkeep.budget import tables as budget_tables

__all__ = [
    "MIGRATIONS",
    "Migration",
    "api_keys",
    "metadata",
    "pending",
    "runs",
    "schema_version",
    "session_history",
    "sessions",
    "workers",
]

metadata = sa.MetaData()

schema_version = sa.Table(
    "agentkeep_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)

sessions = sa.Table(
    "agentkeep_sessions",
    metadata,
    sa.Column("user_id", sa.String(128), primary_key=True),
    sa.Column("session_id", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # The run that may write this session now, and until when its claim holds.
    sa.Column("busy_run_id", sa.String(64), nullable=True),
    sa.Column("busy_until", sa.Float, nullable=True),
)

session_history = sa.Table(
    "agentkeep_session_history",
    metadata,
    sa.Column("user_id", sa.String(128), primary_key=True),
    sa.Column("session_id", sa.String(128), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("messages", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

runs = sa.Table(
    "agentkeep_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("session_id", sa.String(128), nullable=False),
    sa.Column("agent", sa.String(128), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("background", sa.Boolean, nullable=False, default=False),
    sa.Column("webhook_url", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    # The agent's output as JSON text (a string for a text agent); JSON since migration 7.
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("error_type", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("usage", sa.JSON, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=True),
    sa.Column("tools_used", sa.JSON, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=True),
    sa.Column("messages", sa.LargeBinary, nullable=True),
    # The run's model requests and tool calls as a JSON list (`observability.steps`); added by migration 5.
    sa.Column("steps", sa.LargeBinary, nullable=True),
    # A message of parts (text, images, documents, audio) as JSON; null for a message of text. Migration 6.
    sa.Column("input_parts", sa.JSON(none_as_null=True), nullable=True),
    # A run waiting for tool decisions (`stores.waiting`): the calls as the API lists them, what it
    # needs to continue, its deadline, and how often it was resumed; added by migration 7.
    sa.Column("pending", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("deferred", sa.LargeBinary, nullable=True),
    sa.Column("waiting_until", sa.Float, nullable=True),
    sa.Column("resumes", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Index("ix_agentkeep_runs_session", "user_id", "session_id"),
    sa.Index("ix_agentkeep_runs_user_created", "user_id", "created_at"),
    sa.Index("ix_agentkeep_runs_status", "status"),
    sa.Index("ix_agentkeep_runs_created", "created_at"),  # every user's runs, newest first (admin listing)
)

# Processes that execute background runs, for the takeover of a dead one's runs (agentkeep.durable).
workers = sa.Table(
    "agentkeep_workers",
    metadata,
    sa.Column("executor_id", sa.String(128), primary_key=True),
    sa.Column("app_version", sa.String(128), nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    # The live worker that took this one's runs over, and when: a claim is a lease that expires.
    sa.Column("claimed_by", sa.String(128), nullable=True),
    sa.Column("claimed_at", sa.Float, nullable=True),
)

# API keys (`stores.keys`): only a hash of each secret is kept.
api_keys = sa.Table(
    "agentkeep_api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("admin", sa.Boolean, nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Index("ix_agentkeep_api_keys_user", "user_id"),
)

Migration = Callable[[Connection], None]


def _initial(conn: Connection) -> None:
    for table in (sessions, session_history, runs):
        table.create(conn, checkfirst=True)


def _api_keys(conn: Connection) -> None:
    api_keys.create(conn, checkfirst=True)


def _workers(conn: Connection) -> None:
    workers.create(conn, checkfirst=True)


def _run_steps(conn: Connection) -> None:
    """The runs' `steps` column and the index listing every user's runs by time.

    A database created after this column joined `runs` already has both (`_initial` creates the
    table as it is defined now), so each is added only when missing.
    """
    if "steps" not in {column["name"] for column in sa.inspect(conn).get_columns(runs.name)}:
        column_type = runs.c.steps.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {runs.name} ADD COLUMN steps {column_type}"))
    for index in runs.indexes:
        if index.name == "ix_agentkeep_runs_created":
            index.create(conn, checkfirst=True)


def _run_input_parts(conn: Connection) -> None:
    """The runs' `input_parts` column (a database created since has it from `_initial`)."""
    if "input_parts" not in {column["name"] for column in sa.inspect(conn).get_columns(runs.name)}:
        column_type = runs.c.input_parts.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {runs.name} ADD COLUMN input_parts {column_type}"))


def _waiting_runs(conn: Connection) -> None:
    """The runs' columns for waiting on tool decisions, and `output` as JSON text.

    An output stored before was the text itself: it becomes that text as a JSON string, so every
    row reads back the same way (a structured output stored then as its JSON text stays that string).
    """
    have = {column["name"] for column in sa.inspect(conn).get_columns(runs.name)}
    for name in ("pending", "deferred", "waiting_until", "resumes"):
        if name not in have:
            column = runs.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            extra = " NOT NULL DEFAULT 0" if name == "resumes" else ""
            conn.execute(sa.text(f"ALTER TABLE {runs.name} ADD COLUMN {name} {kind}{extra}"))
    quote = "to_json(output)::text" if conn.dialect.name == "postgresql" else "json_quote(output)"
    # Our own table name and a fixed function: nothing from outside reaches this statement.
    conn.execute(sa.text(f"UPDATE {runs.name} SET output = {quote} WHERE output IS NOT NULL"))  # noqa: S608


MIGRATIONS: Sequence[Migration] = (
    _initial,
    budget_tables.create_tables,
    _api_keys,
    _workers,
    _run_steps,
    _run_input_parts,
    _waiting_runs,
)
"""Migration N is MIGRATIONS[N - 1]."""


def pending(applied: set[int]) -> list[tuple[int, Migration]]:
    """The migrations not yet applied, numbered, in order."""
    return [(n, m) for n, m in enumerate(MIGRATIONS, start=1) if n not in applied]
