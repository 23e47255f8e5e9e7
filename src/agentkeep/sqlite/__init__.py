"""SQLite for agentkeep's own tables: the one fast path the store and the budget ledger share.

    transactions.py   SQLiteFile: a file's connections, write lock, threads and WAL checkpoints;
                      transactions on the event loop when they need not wait, else on a thread
    plans.py          `precompiled` statements: compiled once, run straight on the driver

Reads outside these transactions (the store's, through aiosqlite) and PostgreSQL are not this
package's: `configure` only sets up an engine on which SQLAlchemy runs SQLite transactions itself.
"""

from agentkeep.sqlite.plans import FetchedRows, precompiled
from agentkeep.sqlite.transactions import (
    AsyncTransaction,
    SQLiteFile,
    Transaction,
    WouldWait,
    configure,
    is_busy,
    write_lock,
)

__all__ = [
    "AsyncTransaction",
    "FetchedRows",
    "SQLiteFile",
    "Transaction",
    "WouldWait",
    "configure",
    "is_busy",
    "precompiled",
    "write_lock",
]
