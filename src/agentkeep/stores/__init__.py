"""Durable state: sessions, runs, API keys and worker heartbeats, on SQLite or PostgreSQL.

Every statement on these tables lives in this package, one home per table:

    database.py   Database: engines, write and read transactions, migrations, open/close/ping
    sql.py        SQLStore (a Database): sessions and runs, for the runtime and the durable engine
    keys.py       KeyStore: API keys
    workers.py    Workers: the durable engine's heartbeats and takeover claims
    reports.py    read-only reports: a page of the run list, a user's activity per hour
    schema.py     the tables and their migrations
    base.py       the records that cross the boundary (RunRecord, SessionRecord, …)
    backup.py     backup and restore of the SQLite file

The budget ledger's tables are the budget's (`budget.tables`, `budget.ledger`, created here as
migration 2): budget sits below this layer, and runs its transactions on `Database.engine`.

There is no `Store` ABC. There was one, with `SQLStore` its only implementation, and everything
beyond its methods (the durable engine's claims and cancels, keys, heartbeats, the ledger's engine)
needed the concrete class, so callers went around it. The backends that matter, SQLite and
PostgreSQL, are two dialects of one SQLAlchemy Core implementation, and the contract suite
(tests/stores/test_store_contract.py) runs against both; another database family would come in as
a dialect, not as a second `Store`, and an ABC can be drawn from `SQLStore` again when one needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentkeep.stores.base import RunRecord, RunStatus, SessionRecord, Usage

if TYPE_CHECKING:  # SQLAlchemy loads only when a database is opened, not with the records
    from agentkeep.stores.sql import SQLStore

__all__ = ["RunRecord", "RunStatus", "SessionRecord", "Usage", "open_store"]


async def open_store(url: str) -> SQLStore:
    """Open the store named by a database URL (SQLite or PostgreSQL) and migrate it."""
    from agentkeep.stores.sql import SQLStore

    store = SQLStore(url)
    await store.open()
    return store
