"""`agentkeep backup` and `restore` with a local workspace: its files travel beside the database's
backup as a tar, links and special files left out, and come back with the old workspace kept aside."""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

from agentkeep.stores.base import RunRecord, RunStatus
from agentkeep.stores.sql import SQLStore
from agentkeep.stores.workspace_backup import backup_workspace, restore_workspace, workspace_sidecar
from tests.support.cli import run_cli


async def _database(path: Path) -> None:
    store = SQLStore(f"sqlite:///{path}")
    await store.open()
    try:
        run = RunRecord("run_1", "s1", "alice", "a", RunStatus.RUNNING, "hi", time.time())
        await store.start_run(run, lease_s=60)
        run.status = RunStatus.SUCCEEDED
        await store.finish_run(run, append_to_session=b'["m"]')
    finally:
        await store.close()


def _plant(workspace: Path, outside: Path) -> None:
    (workspace / "sessions" / "a-1" / "s-2" / "deep").mkdir(parents=True)
    (workspace / "sessions" / "a-1" / "s-2" / "report.md").write_text("the report")
    (workspace / "sessions" / "a-1" / "s-2" / "deep" / "data.csv").write_text("1,2\n")
    (workspace / "sessions" / "a-1" / "s-2" / "link").symlink_to("/etc/passwd")
    outside.write_text("outside the workspace")
    os.link(outside, workspace / "hard")
    os.mkfifo(workspace / "fifo")


async def test_backup_then_restore_brings_the_workspace_back(tmp_path: Path) -> None:
    """The commands an operator runs: backup writes the database and `<stem>-workspace.tar`; after
    the workspace changed, restore puts back exactly what was saved and keeps the changed one."""
    db, workspace = tmp_path / "data" / "agentkeep.db", tmp_path / "data" / "workspace"
    workspace.mkdir(parents=True)
    await _database(db)
    _plant(workspace, tmp_path / "secret.txt")
    env = {"AGENTKEEP_DATABASE_URL": f"sqlite:///{db}", "AGENTKEEP_WORKSPACE_DIR": str(workspace)}

    backed = run_cli("backup", str(tmp_path / "snap.db"), cwd=tmp_path, env=env)
    assert backed.returncode == 0, backed.stderr
    tar = tmp_path / "snap-workspace.tar"
    assert f"backed up the workspace {workspace} to {tar}: 2 files" in backed.stdout
    with tarfile.open(tar) as archive:
        files = sorted(member.name for member in archive.getmembers() if member.isfile())
        assert all(member.isfile() or member.isdir() for member in archive.getmembers())
    assert files == ["sessions/a-1/s-2/deep/data.csv", "sessions/a-1/s-2/report.md"]

    (workspace / "sessions" / "a-1" / "s-2" / "report.md").write_text("changed after the backup")
    (workspace / "new.txt").write_text("new")
    restored = run_cli("restore", str(tmp_path / "snap.db"), cwd=tmp_path, env=env)
    assert restored.returncode == 0, restored.stderr
    assert f"restored the workspace {workspace}: 2 files" in restored.stdout
    assert (workspace / "sessions" / "a-1" / "s-2" / "report.md").read_text() == "the report"
    assert not (workspace / "new.txt").exists() and not (workspace / "hard").exists()
    kept = workspace.with_name("workspace.pre-restore")
    assert (kept / "new.txt").read_text() == "new"


def test_a_backup_without_a_workspace_leaves_the_workspace_alone(tmp_path: Path) -> None:
    """No workspace folder: nothing is written; a backup without a sidecar restores nothing."""
    assert backup_workspace(tmp_path / "absent", tmp_path / "snap.db") is None
    assert not workspace_sidecar(tmp_path / "snap.db").exists()
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "kept.txt").write_text("kept")
    assert restore_workspace(workspace, tmp_path / "snap.db") is None
    assert (workspace / "kept.txt").read_text() == "kept"


async def test_an_object_storage_workspace_is_not_copied(tmp_path: Path) -> None:
    """With AGENTKEEP_WORKSPACE_URL the command says the bucket is its own backup and writes no tar."""
    db = tmp_path / "agentkeep.db"
    await _database(db)
    env = {"AGENTKEEP_DATABASE_URL": f"sqlite:///{db}", "AGENTKEEP_WORKSPACE_URL": "s3://bucket/prefix"}
    backed = run_cli("backup", str(tmp_path / "snap.db"), cwd=tmp_path, env=env)
    assert backed.returncode == 0, backed.stderr
    assert "object storage, which is its own backup" in backed.stdout
    assert not workspace_sidecar(tmp_path / "snap.db").exists()
