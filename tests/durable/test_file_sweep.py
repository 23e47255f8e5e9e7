"""Retention for the workspace: the folders of sessions idle past AGENTKEEP_RUN_RETENTION_DAYS, or
left by a deleted session, are removed; active sessions', busy ones' and foreign folders stay."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentkeep.config import Settings
from agentkeep.durable.upkeep import FileSweep
from agentkeep.stores import schema
from agentkeep.stores.base import RunRecord, RunStatus
from agentkeep.stores.sql import SQLStore
from agentkeep.testing.mock_llm import MockLLM, Reply
from agentkeep.tools.files import workspace_of, workspace_root
from agentkeep.tools.scope import scope_folder
from tests.durable.support import submit, wait_finished, wait_for
from tests.support.server import ServerProcess
from tests.support.workspace import WORKSPACE_AGENT, open_workspace_dir

DAY = 86400.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLStore]:
    opened = SQLStore(f"sqlite:///{tmp_path / 'agentkeep.db'}")
    await opened.open()
    yield opened
    await opened.close()


async def _session(store: SQLStore, user: str, session: str, *, idle_days: float = 0, busy: bool = False) -> None:
    """A session with one finished run, last updated `idle_days` ago (still held by a run if `busy`)."""
    now = time.time()
    record = RunRecord(f"run_{user}_{session}", session, user, "files", RunStatus.RUNNING, "hi", now, started_at=now)
    await store.start_run(record, lease_s=300)
    if not busy:
        record.status, record.finished_at = RunStatus.SUCCEEDED, now
        await store.finish_run(record, append_to_session=None)
    async with store.writer() as conn:
        s = schema.sessions
        await conn.execute(
            s.update().where(s.c.user_id == user, s.c.session_id == session).values(updated_at=now - idle_days * DAY)
        )


@pytest.mark.parametrize("scope", ["session", "user"])
async def test_the_sweep_removes_only_the_folders_of_sessions_gone_idle(
    store: SQLStore, tmp_path: Path, scope: str
) -> None:
    """Seven days' retention: an active session's folder, a busy session's and a folder that is not
    agentkeep's stay; an idle session's and a deleted session's (no row) go. In `user` scope a
    user's folder stays while any of their sessions is active."""
    settings = Settings(workspace_dir=tmp_path / "ws", workspace_scope=scope, run_retention_days=7)
    await _session(store, "ann", "fresh")
    await _session(store, "ann", "idle", idle_days=30)
    await _session(store, "bea", "idle", idle_days=30)
    await _session(store, "cy", "busy", idle_days=30, busy=True)
    for user, session in [("ann", "fresh"), ("ann", "idle"), ("bea", "idle"), ("cy", "busy"), ("dee", "deleted")]:
        workspace_of(user, session, settings).write_text("f.txt", f"{user}/{session}")
    (tmp_path / "ws" / "sessions" / "operator-notes").mkdir(parents=True, exist_ok=True)

    removed = await FileSweep(settings, store).sweep(time.time() - 7 * DAY)

    def kept(user: str, session: str) -> bool:
        return (tmp_path / "ws" / scope_folder(scope, user, session) / "f.txt").exists()

    if scope == "session":
        assert removed == 3
        assert [kept("ann", "fresh"), kept("ann", "idle"), kept("bea", "idle"), kept("cy", "busy")] == [
            True,
            False,
            False,
            True,
        ]
    else:
        assert removed == 2  # bea (idle) and dee (no session at all)
        assert [kept("ann", "idle"), kept("bea", "idle"), kept("cy", "busy")] == [True, False, True]
    assert not kept("dee", "deleted")
    assert (tmp_path / "ws" / "sessions" / "operator-notes").is_dir()


async def test_the_shared_root_is_never_swept(store: SQLStore, tmp_path: Path) -> None:
    """In `shared` scope the files belong to nobody in particular: nothing is removed."""
    settings = Settings(workspace_dir=tmp_path / "ws", workspace_scope="shared")
    workspace_root(settings).write_text("sessions/x-0123456789abcdef0123456789abcdef/y/f.txt", "kept")
    assert await FileSweep(settings, store).sweep(time.time() + DAY) == 0
    assert [f.path for f in workspace_root(settings).files()] == ["sessions/x-0123456789abcdef0123456789abcdef/y/f.txt"]


def test_the_worker_removes_an_idle_sessions_folder_after_the_retention(tmp_path: Path) -> None:
    """End to end, a retention of 3 s: a background run's file is in its session's folder, and the
    worker's upkeep removes the folder once the session has been idle past the retention."""
    url = f"sqlite:///{tmp_path / 'agentkeep.db'}"
    with open_workspace_dir() as workspace, MockLLM() as mock:
        mock.enqueue(Reply.tool_call("write_file", {"path": "brief.md", "content": "soon gone"}), Reply.text("ok"))
        env = {
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "test-key-not-secret",
            "AGENTKEEP_DATABASE_URL": url,
            "AGENTKEEP_WORKSPACE_DIR": str(workspace),
            "AGENTKEEP_RUN_RETENTION_DAYS": str(3 / DAY),
            "AGENTKEEP_RECOVERY_S": "1.2",  # an upkeep pass every 0.2 s
        }
        with ServerProcess(WORKSPACE_AGENT, tmp_path, env=env) as server:
            run_id = submit(server, "write it", session_id="brief")
            assert wait_finished(server, run_id)["status"] == "succeeded"
            folder = workspace / scope_folder("session", "anonymous", "brief")
            assert (folder / "brief.md").read_text() == "soon gone"
            wait_for(lambda: not folder.exists(), 30, "the idle session's folder to be swept")
