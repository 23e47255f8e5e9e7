"""The ledger's tables, in their own `MetaData`: `stores.schema` creates them as migration 2.

Money is stored as integer nano-dollars (1e-9 USD) so that sums and cap comparisons are exact on
every database; a float column would drift and could let a cap be crossed by a rounding error.

    ledger         one row per priced model request or tool call: the durable record of spend
    counters       running totals per (scope, user, ref) — spent and held — checked atomically
                   against a cap; scope "session" (ref = session id) or "user_day" (ref = UTC day)
    reservations   worst-case amounts held in the counters by requests in flight; they expire,
                   so a crashed process cannot hold a budget for ever
    alerts         one row per threshold crossing; its primary key makes each alert unique
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["alerts", "counters", "create_tables", "ledger", "metadata", "reservations"]

metadata = sa.MetaData()

ledger = sa.Table(
    "agentkeep_ledger",
    metadata,
    # BIGINT on PostgreSQL; INTEGER on SQLite, where only that spelling is the auto-incrementing rowid.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("session_id", sa.String(128), nullable=False),
    sa.Column("agent", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # "model" or "tool"
    sa.Column("model", sa.String(256), nullable=False),  # the model's name, or the tool's
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_nano", sa.BigInteger, nullable=True),  # NULL: the model has no known price
    sa.Column("day", sa.String(10), nullable=False),  # UTC YYYY-MM-DD the spend counts against
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_agentkeep_ledger_run", "run_id"),
    sa.Index("ix_agentkeep_ledger_session", "user_id", "session_id"),
    sa.Index("ix_agentkeep_ledger_user_day", "user_id", "day"),
    sa.Index("ix_agentkeep_ledger_day", "day"),
)

counters = sa.Table(
    "agentkeep_budget_counters",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True),
    sa.Column("user_id", sa.String(128), primary_key=True),
    sa.Column("ref", sa.String(128), primary_key=True),
    sa.Column("spent_nano", sa.BigInteger, nullable=False),
    sa.Column("held_nano", sa.BigInteger, nullable=False),
    # Set when a provider billed more than was reserved: the cap can no longer be trusted to hold.
    sa.Column("closed", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

reservations = sa.Table(
    "agentkeep_budget_reservations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("session_id", sa.String(128), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("amount_nano", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_agentkeep_budget_reservations_expiry", "expires_at"),
)

alerts = sa.Table(
    "agentkeep_budget_alerts",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True),
    sa.Column("user_id", sa.String(128), primary_key=True),
    sa.Column("ref", sa.String(128), primary_key=True),
    sa.Column("threshold_nano", sa.BigInteger, primary_key=True),
    sa.Column("spent_nano", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
)


def create_tables(conn: Connection) -> None:
    """Migration 2: the ledger, budget counters, reservations and alerts."""
    for table in (ledger, counters, reservations, alerts):
        table.create(conn, checkfirst=True)
