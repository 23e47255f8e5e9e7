"""Backup and restore carry the durable engine's state (DBOS's `-dbos.db` beside the database) with it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.stores.backup import BackupError, backup_sqlite, durable_sidecar, restore_sqlite
from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import DURABLE_AGENT, durable_env, run_status, submit, wait_finished
from tests.stores.test_backup import _database, _sessions
from tests.support.cli import run_cli
from tests.support.server import ServerProcess


def _durable_state(database: Path, marker: str) -> Path:
    """A real DBOS system database beside `database` (DBOS's own migrations), tagged with `marker`."""
    from dbos import DBOS

    sidecar = durable_sidecar(database)
    DBOS.migrate(f"sqlite:///{sidecar}")
    with sqlite3.connect(sidecar) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS test_marker (value TEXT)")
        conn.execute("INSERT INTO test_marker VALUES (?)", (marker,))
    return sidecar


def _marker(sidecar: Path) -> str:
    with sqlite3.connect(sidecar) as conn:
        return str(conn.execute("SELECT value FROM test_marker").fetchone()[0])


def test_the_durable_sidecar_is_named_after_the_database() -> None:
    """The same name the durable engine opens: `agentkeep.db` → `agentkeep-dbos.db`, beside it."""
    assert durable_sidecar(Path("/data/agentkeep.db")) == Path("/data/agentkeep-dbos.db")
    assert durable_sidecar(Path("/data/state")) == Path("/data/state-dbos.db")


async def test_a_backup_carries_the_durable_state_and_restore_puts_both_back(tmp_path: Path) -> None:
    """Backup writes PATH and PATH's sidecar, both checked and self-contained; restore replaces
    both, keeping the current pair aside."""
    db, copy = tmp_path / "agentkeep.db", tmp_path / "backups" / "nightly.db"
    copy.parent.mkdir()
    await _database(db, ["backed-up"])
    _durable_state(db, "at backup")
    report = backup_sqlite(db, copy)
    assert report.durable == copy.parent / "nightly-dbos.db" and _marker(report.durable) == "at backup"
    with sqlite3.connect(report.durable) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

    await _database(db, ["later"])
    with sqlite3.connect(durable_sidecar(db)) as conn:
        conn.execute("UPDATE test_marker SET value = 'later'")
    restored = restore_sqlite(db, copy)
    assert restored.durable == durable_sidecar(db) and _marker(durable_sidecar(db)) == "at backup"
    assert _sessions(db) == {"backed-up"}
    assert _marker(tmp_path / "agentkeep-dbos.db.pre-restore") == "later"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


async def test_restoring_a_backup_without_durable_state_clears_the_current_one(tmp_path: Path) -> None:
    """A backup of a database that never ran in the background: the current durable state, which
    belongs to another history, is kept aside rather than paired with the restored database."""
    db, copy = tmp_path / "agentkeep.db", tmp_path / "plain.db"
    await _database(db, ["plain"])
    assert backup_sqlite(db, copy).durable is None and not durable_sidecar(copy).exists()
    _durable_state(db, "current")
    assert restore_sqlite(db, copy).durable is None
    assert not durable_sidecar(db).exists()
    assert _marker(tmp_path / "agentkeep-dbos.db.pre-restore") == "current"


async def test_a_damaged_durable_sidecar_refuses_the_restore_and_touches_nothing(tmp_path: Path) -> None:
    """Half of a pair is no backup: the database and its durable state stay as they were."""
    db, copy = tmp_path / "agentkeep.db", tmp_path / "copy.db"
    await _database(db, ["current"])
    _durable_state(db, "current")
    backup_sqlite(db, copy)
    durable_sidecar(copy).write_bytes(b"not a database" * 100)
    before = db.read_bytes(), durable_sidecar(db).read_bytes()
    with pytest.raises(BackupError, match=r"copy-dbos\.db"):
        restore_sqlite(db, copy)
    assert (db.read_bytes(), durable_sidecar(db).read_bytes()) == before


async def test_a_backup_whose_sidecar_would_land_on_the_live_files_is_refused(tmp_path: Path) -> None:
    """`agentkeep backup data/agentkeep` would write its sidecar over the live `agentkeep-dbos.db`."""
    db = tmp_path / "agentkeep.db"
    await _database(db, ["a"])
    sidecar = _durable_state(db, "live")
    with pytest.raises(BackupError, match="live database"):
        backup_sqlite(db, tmp_path / "agentkeep")
    assert _marker(sidecar) == "live"


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def test_a_queued_background_run_survives_backup_and_restore_into_a_fresh_data_dir(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """Queued on `serve --no-worker`, backed up while serving, restored into a new directory: a
    server there executes it to the end."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    old_url, new_url = f"sqlite:///{old / 'agentkeep.db'}", f"sqlite:///{new / 'agentkeep.db'}"
    backup = tmp_path / "backup.db"
    with ServerProcess(DURABLE_AGENT, old, env=durable_env(mock_llm, old_url, old), args=["--no-worker"]) as api:
        run_id = submit(api, "run me after the restore", session_id="s-restored")
        assert run_status(api, run_id)["status"] == "queued"
        made = run_cli("backup", str(backup), cwd=tmp_path, env={"AGENTKEEP_DATABASE_URL": old_url})
        assert made.returncode == 0, made.stderr
    assert durable_sidecar(backup).is_file()
    restored = run_cli("restore", str(backup), cwd=tmp_path, env={"AGENTKEEP_DATABASE_URL": new_url})
    assert restored.returncode == 0, restored.stderr
    assert durable_sidecar(new / "agentkeep.db").is_file()
    mock_llm.enqueue(Reply.text("done after restore"))
    with ServerProcess(DURABLE_AGENT, new, env=durable_env(mock_llm, new_url, new)) as server:
        run = wait_finished(server, run_id)
        assert run["status"] == "succeeded" and run["output"] == "done after restore", run
        messages = server.client.get("/v1/sessions/s-restored").json()["messages"]
        assert [m["content"] for m in messages] == ["run me after the restore", "done after restore"]
    assert mock_llm.request_count == 1
