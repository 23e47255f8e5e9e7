"""Backup and restore of the SQLite database, on real files: checked copies, guarded atomic restores."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agentkeep.stores.backup import BackupError, DatabaseLock, backup_sqlite, postgres_commands, restore_sqlite
from agentkeep.stores.base import RunRecord, RunStatus
from agentkeep.stores.sql import SQLStore
from tests.support.cli import run_cli


async def _database(path: Path, sessions: list[str]) -> None:
    """A real agentkeep database at `path` with one finished run per session id."""
    store = SQLStore(f"sqlite:///{path}")
    await store.open()
    try:
        for sid in sessions:
            run = RunRecord(f"run_{sid}", sid, "alice", "a", RunStatus.RUNNING, "hi", time.time())
            await store.start_run(run, lease_s=60)
            run.status = RunStatus.SUCCEEDED
            await store.finish_run(run, append_to_session=b'["m"]')
    finally:
        await store.close()


def _sessions(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT session_id FROM agentkeep_sessions")}


async def test_a_backup_is_one_checked_self_contained_file(tmp_path: Path) -> None:
    """The copy passes integrity_check, needs no -wal file beside it, and holds every session."""
    db = tmp_path / "agentkeep.db"
    await _database(db, ["a", "b"])
    report = backup_sqlite(db, tmp_path / "copy.db")
    assert report.path == tmp_path / "copy.db" and report.sessions == 2 and report.runs == 2
    assert not (tmp_path / "copy.db-wal").exists()
    with sqlite3.connect(report.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _sessions(report.path) == {"a", "b"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


async def test_a_backup_into_a_directory_gets_a_timestamped_name(tmp_path: Path) -> None:
    """`agentkeep backup DIR` suits cron: each run writes a new file named by the UTC time."""
    db = tmp_path / "agentkeep.db"
    await _database(db, ["a"])
    (tmp_path / "backups").mkdir()
    report = backup_sqlite(db, tmp_path / "backups")
    assert report.path.parent == tmp_path / "backups" and report.path.name.startswith("agentkeep-")


def test_backing_up_a_missing_database_or_onto_itself_fails(tmp_path: Path) -> None:
    """No database → error; PATH naming the database itself → error, the database untouched."""
    with pytest.raises(BackupError, match="no database"):
        backup_sqlite(tmp_path / "none.db", tmp_path / "copy.db")
    db = tmp_path / "agentkeep.db"
    db.write_bytes(b"")
    with pytest.raises(BackupError, match="database itself"):
        backup_sqlite(db, db)


async def test_restore_is_refused_while_any_process_has_the_database_open(tmp_path: Path) -> None:
    """An open store (server, worker, keys command) holds the lock: restore refuses and changes nothing."""
    db, backup = tmp_path / "agentkeep.db", tmp_path / "backup.db"
    await _database(backup, ["old"])
    await _database(db, ["new"])
    store = SQLStore(f"sqlite:///{db}")
    await store.open()
    try:
        with pytest.raises(BackupError, match="in use"):
            restore_sqlite(db, backup)
    finally:
        await store.close()
    assert _sessions(db) == {"new"}
    restore_sqlite(db, backup)  # closed: now it goes through
    assert _sessions(db) == {"old"}


async def test_a_server_starting_during_a_restore_refuses_to_open_the_database(tmp_path: Path) -> None:
    """While restore holds the lock exclusively, opening the store fails with a clear message."""
    db = tmp_path / "agentkeep.db"
    await _database(db, ["a"])
    lock = DatabaseLock(db)
    assert lock.acquire(exclusive=True)
    try:
        with pytest.raises(BackupError, match="being restored"):
            await SQLStore(f"sqlite:///{db}").open()
    finally:
        lock.release()


async def test_restore_replaces_the_database_drops_its_stale_wal_and_keeps_the_old_one(tmp_path: Path) -> None:
    """The old -wal/-shm would be replayed into the new file: they go; the old database is kept aside."""
    db, backup = tmp_path / "agentkeep.db", tmp_path / "backup.db"
    await _database(backup, ["from-backup"])
    await _database(db, ["current"])
    (tmp_path / "agentkeep.db-shm").write_bytes(b"stale")
    report = restore_sqlite(db, backup)
    assert _sessions(db) == {"from-backup"}
    assert not (tmp_path / "agentkeep.db-shm").exists() and not (tmp_path / "agentkeep.db-wal").exists()
    assert report.kept == tmp_path / "agentkeep.db.pre-restore" and _sessions(report.kept) == {"current"}
    store = SQLStore(f"sqlite:///{db}")  # and agentkeep opens the restored file as usual
    await store.open()
    try:
        assert await store.get_session("alice", "from-backup") is not None
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "foreign", "newer"])
async def test_a_bad_backup_is_refused_and_the_database_is_untouched(tmp_path: Path, kind: str) -> None:
    """Not SQLite, damaged, another application's database, or a newer schema: refused, nothing replaced."""
    db, backup = tmp_path / "agentkeep.db", tmp_path / "backup.db"
    await _database(db, ["current"])
    if kind == "garbage":
        backup.write_bytes(b"not a database at all" * 100)
    elif kind == "truncated":
        await _database(backup, [f"s{i}" for i in range(50)])
        backup.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])
    elif kind == "foreign":
        with sqlite3.connect(backup) as conn:
            conn.execute("CREATE TABLE notes (body TEXT)")
    else:
        await _database(backup, ["future"])
        with sqlite3.connect(backup) as conn:
            conn.execute("INSERT INTO agentkeep_schema_version VALUES (999, 0)")
    before = db.read_bytes()
    with pytest.raises(BackupError):
        restore_sqlite(db, backup)
    assert db.read_bytes() == before and _sessions(db) == {"current"}
    assert not (tmp_path / "agentkeep.db.pre-restore").exists()


def test_postgres_commands_name_the_database_without_its_password() -> None:
    """pg_dump / pg_restore lines for the configured database; the password never printed."""
    url = "postgresql+asyncpg://app:s3cret-pw@db.internal:5433/agentkeep"
    (dump,) = postgres_commands(url, Path("/backups/a b.dump"), restore=False)
    (load,) = postgres_commands(url, Path("/backups/a b.dump"), restore=True)
    assert dump.startswith("pg_dump --format=custom") and "'/backups/a b.dump'" in dump
    assert load.startswith("pg_restore --clean --if-exists")
    for line in (dump, load):
        assert "s3cret-pw" not in line and "postgresql://app@db.internal:5433/agentkeep" in line


def test_the_cli_prints_the_postgres_commands_for_a_postgres_database(tmp_path: Path) -> None:
    """`agentkeep backup` / `restore` on PostgreSQL print the command to run (stdout), exit 0."""
    env = {"AGENTKEEP_DATABASE_URL": "postgresql://app:pw-never-shown@127.0.0.1:1/agentkeep"}
    for command, tool in (("backup", "pg_dump"), ("restore", "pg_restore")):
        result = run_cli(command, "out.dump", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(tool) and "pw-never-shown" not in result.stdout + result.stderr


def test_the_cli_reports_a_bad_backup_in_one_line(tmp_path: Path) -> None:
    """`agentkeep restore` of a file that is no backup: exit 1 and one line, no traceback."""
    (tmp_path / "bad.db").write_bytes(b"nope" * 1000)
    env = {"AGENTKEEP_DATABASE_URL": f"sqlite:///{tmp_path / 'agentkeep.db'}"}
    result = run_cli("restore", "bad.db", cwd=tmp_path, env=env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
