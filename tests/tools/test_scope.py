"""Whose folder a tool call uses: ids map to distinct, safe folder names, and the run bound by the
lifecycle is what the tools see, in worker threads and tasks too, and nothing outside a run."""

from __future__ import annotations

import asyncio
import random
import string
from pathlib import Path

import anyio.to_thread
import pytest

from agentkeep.config import Settings
from agentkeep.errors import ConfigError
from agentkeep.tools import _config, files
from agentkeep.tools.files import check_workspace, default_workspace, workspace_root
from agentkeep.tools.scope import bound_to, current_owner, folder_name, is_folder_name, scope_folder

TRICKY_IDS = [
    "..",
    ".",
    "a/b",
    "a\\b",
    "A",
    "a",
    "é",
    "e\u0301",
    "%2e%2e",
    "-",
    "_",
    "x",
    "",
    " ",
    "sessions",
    "a" * 128,
    "a" * 127 + "b",
    "😀" * 128,
    "CON",
    "a\x00b",
]


@pytest.mark.parametrize("kind", ["user", "session"])
def test_tricky_ids_get_distinct_safe_folder_names(kind: str) -> None:
    """`..`, `/`, case and Unicode variants, empty and very long ids: each its own name, still
    distinct when lowercased (a case-insensitive disk), of the shape the sweep recognises."""
    names = [folder_name(kind, ident) for ident in TRICKY_IDS]  # type: ignore[arg-type]  # kind: "user" | "session"
    assert len({name.lower() for name in names}) == len(TRICKY_IDS)
    for name in names:
        assert is_folder_name(name), name
        assert not name.startswith((".", "-")) and "/" not in name and len(name) <= 73


def test_a_user_id_never_names_a_session_folder_and_many_ids_never_collide() -> None:
    """The hash separates kinds; 20,000 random session ids give 20,000 names."""
    assert folder_name("user", "alice") != folder_name("session", "alice")
    alphabet = string.ascii_letters + string.digits + "._:-"
    ids = {"".join(random.choices(alphabet, k=random.randint(1, 20))) for _ in range(20_000)}
    assert len({folder_name("session", ident) for ident in ids}) == len(ids)


def test_each_scope_has_its_folder() -> None:
    """session: per user and session; user: per user; shared: the root."""
    assert (
        scope_folder("session", "alice", "s1")
        == f"sessions/{folder_name('user', 'alice')}/{folder_name('session', 's1')}"
    )
    assert scope_folder("user", "alice", "s1") == f"users/{folder_name('user', 'alice')}"
    assert scope_folder("shared", "alice", "s1") == ""


async def test_the_bound_run_is_what_tools_see_in_threads_and_tasks(
    tool_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Inside `bound_to` a sync tool on a worker thread and a task started from it see the run;
    outside, there is none and the tools use the root, as before scopes."""
    tool_env.setenv("AGENTKEEP_WORKSPACE_DIR", str(tmp_path))
    assert current_owner() is None
    assert default_workspace().folder == ""
    with bound_to("alice", "s1"):
        in_thread = await anyio.to_thread.run_sync(lambda: default_workspace().folder)
        in_task = await asyncio.create_task(asyncio.to_thread(lambda: current_owner()))
    assert in_thread == scope_folder("session", "alice", "s1")
    assert in_task is not None and (in_task.user_id, in_task.session_id) == ("alice", "s1")
    assert current_owner() is None


def test_object_storage_without_its_client_is_a_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """AGENTKEEP_WORKSPACE_URL without the s3 extra installed: one clear line, before serving."""
    monkeypatch.setattr(files.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'agentkeep\[s3\]'"):
        check_workspace(Settings(workspace_url="s3://bucket/prefix"))
    check_workspace(Settings())  # a local workspace needs nothing


def test_a_workspace_url_must_name_a_bucket() -> None:
    """The setting is checked when read: `s3://` and other schemes are refused."""
    for bad in ("s3://", "https://bucket/prefix", "bucket/prefix"):
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            Settings(workspace_url=bad)
    _config.reset()
    assert Settings(workspace_url=" s3://b/p ").workspace_url == "s3://b/p"
    assert workspace_root(Settings(workspace_dir=Path("/nowhere"))).folder == ""
