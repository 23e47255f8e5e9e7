"""Scoped workspaces end to end: `agentkeep serve` with keys, the real file tools and run_python
called by the scripted model, on local disk and on a real S3-compatible server (moto) alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import Reply
from agentkeep.tools.sandbox import find_bwrap
from tests.support.s3 import fresh_bucket, s3_env
from tests.support.server import ServerProcess
from tests.support.workspace import CROSS_SCOPE, WORKSPACE_AGENT, Served, served

SECRET = "alice-q3-numbers-7f3a91"
HAS_BWRAP = find_bwrap() is not None
# What another scope's code tries from inside the sandbox: its folder, the parent, the host path.
PROBE = """\
import os
print(sorted(os.listdir('.')))
for path in ['report.md', '../report.md', '/workspace/../report.md', '../../../sessions']:
    try:
        print(open(path).read() if os.path.isfile(path) else os.listdir(path))
    except OSError as exc:
        print(type(exc).__name__)
"""
# What another scope's model tries with the file tools.
HOSTILE_PATHS = ["report.md", "../report.md", "../../report.md", "/workspace/../report.md", "%2e%2e/report.md"]


@pytest.fixture(params=["disk", "s3"])
def storage(request: pytest.FixtureRequest) -> dict[str, str]:
    """No extra variables (the workspace on local disk), or a fresh bucket on the moto server."""
    if request.param == "disk":
        return {}
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return s3_env(endpoint, fresh_bucket(endpoint))


def _cannot_reach(s: Served, key: str, session_id: str, who: str) -> None:
    """Every way `who` has to read alice's report comes back without it."""
    for path in HOSTILE_PATHS:
        answer = s.call(key, session_id, "read_file", {"path": path})
        CROSS_SCOPE.attempt(answer, SECRET, f"read_file({path!r}) from {who}")
    listing = s.call(key, session_id, "list_files", {"path": "."})
    CROSS_SCOPE.attempt(listing, "report.md", f"list_files from {who}")
    if HAS_BWRAP:
        ran = s.call(key, session_id, "run_python", {"code": PROBE})
        CROSS_SCOPE.attempt(ran, SECRET, f"run_python from {who}")
        assert json.loads(ran)["stdout"].startswith("[]"), ran


def test_in_session_scope_a_file_is_seen_by_its_own_session_only(tmp_path: Path, storage: dict[str, str]) -> None:
    """alice's run writes report.md with the real write_file; bob's run in a session of the same
    name and alice's other session get "does not exist", list nothing and find nothing from
    run_python; alice's next run in the first session reads it back, with read_file and run_python."""
    with served(tmp_path, "session", storage) as s:
        assert "wrote 23 bytes" in s.call(s.alice, "s1", "write_file", {"path": "report.md", "content": SECRET})
        assert "does not exist" in s.call(s.bob, "s1", "read_file", {"path": "report.md"})
        _cannot_reach(s, s.bob, "s1", "bob's session s1")
        _cannot_reach(s, s.alice, "s2", "alice's session s2")
        assert s.call(s.alice, "s1", "read_file", {"path": "report.md"}) == SECRET
        if HAS_BWRAP:
            ran = json.loads(s.call(s.alice, "s1", "run_python", {"code": "print(open('report.md').read())"}))
            assert ran["stdout"] == SECRET + "\n", ran


def test_in_user_scope_a_users_sessions_share_their_files_and_nobody_else(
    tmp_path: Path, storage: dict[str, str]
) -> None:
    """With AGENTKEEP_WORKSPACE_SCOPE=user, alice's other session reads (and run_python sees) what
    her first wrote; bob, in a session of the same name, still reaches none of it."""
    with served(tmp_path, "user", storage) as s:
        s.call(s.alice, "s1", "write_file", {"path": "report.md", "content": SECRET})
        assert s.call(s.alice, "s2", "read_file", {"path": "report.md"}) == SECRET
        if HAS_BWRAP:
            ran = json.loads(s.call(s.alice, "s2", "run_python", {"code": "print(sorted(__import__('os').listdir()))"}))
            assert ran["stdout"] == "['report.md']\n", ran
        _cannot_reach(s, s.bob, "s1", "bob in user scope")


def test_code_in_the_sandbox_writes_where_the_file_tools_read(tmp_path: Path, storage: dict[str, str]) -> None:
    """run_python's /workspace is the session's folder both ways: a file its code writes (in a
    subfolder too) is what read_file then returns, and a link it plants is not followed or saved."""
    if not HAS_BWRAP:
        pytest.skip("bubblewrap is not installed")
    code = (
        "import os\nos.makedirs('out', exist_ok=True)\nopen('out/result.csv', 'w').write('a,b\\n1,2\\n')\n"
        "os.symlink('/etc/passwd', 'passwd')\n"
    )
    with served(tmp_path, "session", storage) as s:
        ran = json.loads(s.call(s.alice, "s1", "run_python", {"code": code}))
        assert ran["exit_code"] == 0, ran
        assert s.call(s.alice, "s1", "read_file", {"path": "out/result.csv"}) == "a,b\n1,2\n"
        answer = s.call(s.alice, "s1", "read_file", {"path": "passwd"})
        CROSS_SCOPE.attempt(answer, "root:x:0:0", "a symlink run_python planted")


def test_background_runs_and_tasks_act_in_their_sessions_folder(tmp_path: Path, storage: dict[str, str]) -> None:
    """A background run's write_file lands where the session's next synchronous run reads it, and a
    task's agent call (`ask`) writes into the task's own session, listed by its files route for
    its owner and 404 for bob."""
    with served(tmp_path, "session", storage) as s:
        args = {"path": "later.md", "content": "from the background"}
        assert "wrote" in s.call(s.alice, "bg", "write_file", args, background=True)
        assert s.call(s.alice, "bg", "read_file", {"path": "later.md"}) == "from the background"
        s.mock.enqueue(Reply.tool_call("write_file", {"path": "task.md", "content": "from a task"}), Reply.text("ok"))
        accepted = s.server.client.post("/v1/tasks/note", json={"input": {"text": "x"}}, headers=s.headers(s.alice))
        assert accepted.status_code == 202, accepted.text
        run = s.wait_finished(s.alice, accepted.json()["run_id"])
        assert run["status"] == "succeeded", run
        files = s.get(f"/v1/sessions/{run['session_id']}/files", s.alice).json()["files"]
        assert [f["path"] for f in files] == ["task.md"]
        assert s.get(f"/v1/sessions/{run['session_id']}/files", s.bob).status_code == 404


def test_two_processes_sharing_one_bucket_see_one_workspace(tmp_path: Path, s3_endpoint: str) -> None:
    """Two servers on one database and one bucket (a fleet): a file written through the first is
    read (and downloaded) through the second in the same session, and bob reaches it through neither."""
    storage = s3_env(s3_endpoint, fresh_bucket(s3_endpoint))
    with served(tmp_path, "session", storage) as s:
        s.call(s.alice, "s1", "write_file", {"path": "report.md", "content": SECRET})
        with ServerProcess(WORKSPACE_AGENT, tmp_path, env=s.env) as second:
            first, s.server = s.server, second
            try:
                assert s.call(s.alice, "s1", "read_file", {"path": "report.md"}) == SECRET
                assert s.get("/v1/sessions/s1/files/report.md", s.alice).text == SECRET
                answer = s.call(s.bob, "s1", "read_file", {"path": "report.md"})
                CROSS_SCOPE.attempt(answer, SECRET, "read_file from bob on the second process")
            finally:
                s.server = first
        assert not s.workspace.joinpath("sessions").exists()  # nothing went to the local disk
