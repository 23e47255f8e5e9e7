"""Durable state: the `Store` ABC and its SQL backend."""

from agentkeep.stores.base import RunRecord, RunStatus, SessionRecord, Store, Usage

__all__ = ["RunRecord", "RunStatus", "SessionRecord", "Store", "Usage", "open_store"]


async def open_store(url: str) -> Store:
    """Open the store named by a database URL (SQLite or PostgreSQL) and migrate it."""
    from agentkeep.stores.sql import SQLStore

    store = SQLStore(url)
    await store.open()
    return store
