"""Backup and restore of the embedded SQLite database; the commands to use for PostgreSQL.

Backup (safe while servers run):

    SQLite's online backup API copies every page inside one read transaction: in WAL mode readers
    never block writers, so the server keeps serving, and the copy is the database as of one
    instant (every transaction committed before it, none after). The copy is switched out of WAL
    mode (one self-contained file), passes `PRAGMA integrity_check`, and only then is renamed to
    PATH, so PATH is never a half-written file.

Restore (refused while any agentkeep process has the database open):

    Every process that opens the database (`SQLStore.open`: server, worker, `keys` commands) holds a
    shared `flock` on `<database>.lock` until it closes it; the kernel drops it when the process
    dies, so a crash leaves no stale lock. Restore takes that lock exclusively without waiting:
    if anyone holds it, restore stops and says so. Holding it, restore checks the backup, copies it
    next to the database, keeps the current database as `<database>.pre-restore`, removes the old
    `-wal`/`-shm` files (SQLite would replay an old WAL into the new file) and renames the copy over
    the database: one atomic rename. While it runs, a server that starts refuses to open the file.

The durable engine's state (DBOS's system database, `<stem>-dbos<suffix>` beside the database:
queued runs, checkpoints, schedules) travels with it as a pair: `agentkeep.db` is backed up with
`agentkeep-dbos.db`, to `PATH` and `PATH`'s own `-dbos` sidecar, and restored the same way. The two
snapshots are pinned back to back (a read transaction on the system database, then one on ours,
before either is copied), so ours is never older than DBOS's: a run DBOS knows is always in our
tables, and what ours has beyond DBOS's (a step whose checkpoint came a moment later) is what a
crash at that instant leaves, which a resumed run already handles. A backup without a sidecar (no
background run ever, or an older backup) restores with the durable state cleared, kept aside like
the database. Each file is renamed into place atomically, the sidecar first on backup and the
database first on restore; a command killed between the two renames leaves a mismatched pair, so
run it again.

PostgreSQL is backed up with its own tools; `postgres_commands` says which (DBOS's state is the
`dbos` schema of the same database, so one dump holds both).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import sqlalchemy as sa

from agentkeep.errors import AgentkeepError, ConfigError
from agentkeep.stores.schema import MIGRATIONS

if sys.platform != "win32":
    import fcntl

__all__ = [
    "BackupError",
    "BackupReport",
    "DatabaseLock",
    "backup_sqlite",
    "durable_sidecar",
    "postgres_commands",
    "restore_sqlite",
    "sqlite_path",
]

T = TypeVar("T")

_SCHEMA_TABLE = "agentkeep_schema_version"
_DBOS_TABLE = "workflow_status"
_BUSY_TIMEOUT_MS = 10_000


class BackupError(AgentkeepError):
    """A backup or restore that could not be done; the message says why."""


@dataclass(frozen=True)
class BackupReport:
    """What a backup or restore wrote, for the CLI to print."""

    path: Path
    size_bytes: int
    sessions: int
    runs: int
    kept: Path | None = None  # restore: where the database it replaced was kept
    durable: Path | None = None  # the durable engine's state written beside it, when there is any


def durable_sidecar(database: Path) -> Path:
    """Where the durable engine keeps its state for the SQLite `database`: `agentkeep.db` → `agentkeep-dbos.db`."""
    return database.with_name(f"{database.stem}-dbos{database.suffix or '.db'}")


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite database URL; None for PostgreSQL. An in-memory database is an error."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"AGENTKEEP_DATABASE_URL is not a database URL: {exc}") from None
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise ConfigError("the database is in memory: there is nothing to back up or restore")
    return Path(parsed.database)


class DatabaseLock:
    """`<database>.lock`, held shared by every process using the database and exclusively by restore."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._file: IO[bytes] | None = None

    def acquire(self, *, exclusive: bool) -> bool:
        """Take the lock without waiting; False when another process holds it the other way."""
        if sys.platform == "win32":  # no flock: restore cannot tell whether a server runs
            return True
        try:
            handle = self.path.open("ab")
        except OSError:
            return True  # a directory we cannot write in: restore could not write there either
        try:
            fcntl.flock(handle.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None

    @contextlib.contextmanager
    def held(self, *, exclusive: bool, busy: str) -> Iterator[None]:
        if not self.acquire(exclusive=exclusive):
            raise BackupError(busy)
        try:
            yield
        finally:
            self.release()


def backup_sqlite(database: Path, destination: Path) -> BackupReport:
    """A consistent, checked copy of `database` at `destination` (a file, or a directory to put
    one in), and of its durable sidecar beside that, when it has one."""
    if not database.is_file():
        raise BackupError(f"no database at {database}: nothing to back up")
    if destination.is_dir():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        destination = destination / f"{database.stem}-{stamp}.db"
    sidecar, copied_sidecar = durable_sidecar(database), durable_sidecar(destination)
    if destination.exists() and destination.resolve() == database.resolve():
        raise BackupError("the backup path is the database itself: choose another path")
    if copied_sidecar.exists() and copied_sidecar.resolve() in {database.resolve(), sidecar.resolve()}:
        raise BackupError("the backup would overwrite the live database's files: choose another path")
    if not destination.parent.is_dir():
        raise BackupError(f"no directory {destination.parent} to write the backup in")
    busy = f"{database} is being restored; back it up when the restore has finished"
    temporary, durable_temporary = _sibling(destination, "backup"), _sibling(copied_sidecar, "backup")
    with DatabaseLock(database).held(exclusive=False, busy=busy), contextlib.ExitStack() as stack:
        # DBOS's snapshot first, then ours, back to back, before either is copied (module docstring).
        durable = _pin(stack.enter_context(contextlib.closing(_connect(sidecar)))) if sidecar.is_file() else None
        source = _pin(stack.enter_context(contextlib.closing(_connect(database))))
        try:
            sessions, runs = _copy(source, temporary, _check)
            if durable is not None:
                _copy(durable, durable_temporary, _check_durable)
                _durable_replace(durable_temporary, copied_sidecar)
            else:
                copied_sidecar.unlink(missing_ok=True)  # an older backup's, which would not match this one
            _durable_replace(temporary, destination)
        finally:
            temporary.unlink(missing_ok=True)
            durable_temporary.unlink(missing_ok=True)
    size = destination.stat().st_size
    return BackupReport(destination, size, sessions, runs, durable=copied_sidecar if durable else None)


def restore_sqlite(database: Path, backup: Path) -> BackupReport:
    """Replace `database` with `backup`, and its durable sidecar with the backup's (or with none),
    each atomically; refused while any agentkeep process uses the database."""
    if not backup.is_file():
        raise BackupError(f"no backup at {backup}")
    database.parent.mkdir(parents=True, exist_ok=True)
    backed_up_sidecar, sidecar = durable_sidecar(backup), durable_sidecar(database)
    has_durable = backed_up_sidecar.is_file()
    busy = f"{database} is in use by a running agentkeep (server, worker or command): stop it, then restore"
    with DatabaseLock(database).held(exclusive=True, busy=busy):
        temporary, durable_temporary = _sibling(database, "restore"), _sibling(sidecar, "restore")
        try:
            with contextlib.closing(_connect(backup, read_only=True)) as source:
                _check(source, backup)
                _check_version(source, backup)
                sessions, runs = _copy(source, temporary, _check)
            if has_durable:
                with contextlib.closing(_connect(backed_up_sidecar, read_only=True)) as source:
                    _check_durable(source, backed_up_sidecar)
                    _copy(source, durable_temporary, _check_durable)
            kept = _put_in_place(database, temporary)
            _put_in_place(sidecar, durable_temporary if has_durable else None)
        finally:
            temporary.unlink(missing_ok=True)
            durable_temporary.unlink(missing_ok=True)
    size = database.stat().st_size
    return BackupReport(database, size, sessions, runs, kept, durable=sidecar if has_durable else None)


def postgres_commands(url: str, path: Path, *, restore: bool) -> list[str]:
    """The `pg_dump` / `pg_restore` command lines for this database; the password is left out."""
    parsed = sa.make_url(url)
    plain = sa.URL.create("postgresql", parsed.username, None, parsed.host, parsed.port, parsed.database, parsed.query)
    target = shlex.quote(plain.render_as_string(hide_password=False))
    where = shlex.quote(str(path))
    if restore:
        return [f"pg_restore --clean --if-exists --no-owner --single-transaction --dbname={target} {where}"]
    return [f"pg_dump --format=custom --no-owner --file={where} {target}"]


def _connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode={'ro' if read_only else 'rwc'}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    return conn


def _sound_tables(conn: sqlite3.Connection, path: Path) -> set[str]:
    """The database's table names, once it passes `integrity_check`; else `BackupError`."""
    try:
        verdict = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a readable SQLite database: {exc}") from None
    if verdict != ["ok"]:
        raise BackupError(f"{path} fails PRAGMA integrity_check: {verdict[0]}")
    return tables


def _check(conn: sqlite3.Connection, path: Path) -> tuple[int, int]:
    """Refuse a database that fails `integrity_check` or is not agentkeep's; count its sessions and runs."""
    tables = _sound_tables(conn, path)
    if _SCHEMA_TABLE not in tables:
        raise BackupError(f"{path} is not an agentkeep database (no {_SCHEMA_TABLE} table)")
    counts = [
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if table in tables else 0  # noqa: S608 — constants
        for table in ("agentkeep_sessions", "agentkeep_runs")
    ]
    return counts[0], counts[1]


def _check_durable(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a durable sidecar that fails `integrity_check` or is not DBOS's system database."""
    if _DBOS_TABLE not in _sound_tables(conn, path):
        raise BackupError(f"{path} is not the durable engine's database (no {_DBOS_TABLE} table)")


def _pin(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Open a read transaction on `conn`: its snapshot is what a later `backup()` from it copies."""
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def _copy(source: sqlite3.Connection, temporary: Path, check: Callable[[sqlite3.Connection, Path], T]) -> T:
    """Copy `source` into the new file `temporary` as one self-contained file, and check the copy."""
    with contextlib.closing(_connect(temporary)) as copy:
        source.backup(copy)  # one step: the whole database inside one read transaction
        copy.execute("PRAGMA journal_mode=DELETE")
        return check(copy, temporary)


def _put_in_place(target: Path, replacement: Path | None) -> Path | None:
    """Keep `target` aside (`.pre-restore`), drop its stale WAL, and rename `replacement` over it (or
    leave nothing there); return where the old file was kept."""
    kept = _keep_current(target)
    for suffix in ("-wal", "-shm", "-journal"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    if replacement is not None:
        _durable_replace(replacement, target)
    else:
        target.unlink(missing_ok=True)
    return kept


def _check_version(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a backup whose schema is newer than this agentkeep knows: its code would misread it."""
    newest = conn.execute(f"SELECT max(version) FROM {_SCHEMA_TABLE}").fetchone()[0] or 0  # noqa: S608
    if newest > len(MIGRATIONS):
        raise BackupError(f"{path} has schema version {newest}; this agentkeep knows up to {len(MIGRATIONS)}: upgrade")


def _sibling(path: Path, purpose: str) -> Path:
    return path.with_name(f".{path.name}.{purpose}-{secrets.token_hex(4)}")


def _keep_current(database: Path) -> Path | None:
    """Keep the database being replaced (with its WAL) as `<database>.pre-restore`, by a hard link when possible."""
    if not database.exists():
        return None
    kept = database.with_name(database.name + ".pre-restore")
    for suffix in ("", "-wal", "-shm"):
        kept.with_name(kept.name + suffix).unlink(missing_ok=True)
    try:
        os.link(database, kept)
    except OSError:
        import shutil

        shutil.copy2(database, kept)
    wal = database.with_name(database.name + "-wal")
    if wal.exists():
        os.replace(wal, kept.with_name(kept.name + "-wal"))
    return kept


def _durable_replace(source: Path, target: Path) -> None:
    """Rename `source` over `target` after its bytes are on disk, then make the rename durable too."""
    with source.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
