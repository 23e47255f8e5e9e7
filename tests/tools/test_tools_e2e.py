"""The safe tools inside `agentkeep serve`: a scripted model uses them and meets their refusals."""

from __future__ import annotations

import json
from pathlib import Path

from agentkeep.testing.mock_llm import MockLLM, Reply
from agentkeep.tools.sandbox import find_bwrap
from agentkeep.tools.scope import scope_folder
from tests.support.server import ServerProcess
from tests.support.workspace import open_workspace_dir

AGENT = str(Path(__file__).with_name("tools_agent.py"))


def test_a_served_agent_uses_the_tools_and_reads_their_refusals(tmp_path: Path) -> None:
    """Writes land in the run's session folder of AGENTKEEP_WORKSPACE_DIR; escapes and SSRF come back
    to the model as failed tool results and the run still succeeds; run_python runs sandboxed (or
    says it cannot)."""
    replies = [
        Reply.tool_call("write_file", {"path": "notes/a.txt", "content": "hello"}),
        Reply.tool_call("read_file", {"path": "../../../etc/passwd"}),
        Reply.tool_call("fetch_url", {"url": "http://169.254.169.254/latest/meta-data/"}),
        Reply.tool_call("run_python", {"code": "print(6 * 7)"}),
        Reply.text("done"),
    ]
    with open_workspace_dir() as workspace, MockLLM(replies) as mock:
        env = {
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "test-key-not-secret",
            "AGENTKEEP_DATABASE_URL": f"sqlite:///{tmp_path / 'agentkeep.db'}",
            "AGENTKEEP_WORKSPACE_DIR": str(workspace),
        }
        with ServerProcess(AGENT, tmp_path, env=env) as server:
            response = server.post_run(message="take notes, then look around")
            tool_results = [m["content"] for m in mock.requests[-1]["messages"] if m["role"] == "tool"]
        folder = workspace / scope_folder("session", "anonymous", response.json().get("session_id", "-"))
        written = (folder / "notes" / "a.txt").read_text()
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "succeeded"
    assert result["output"] == "done"
    assert result["tools_used"] == ["write_file", "read_file", "fetch_url", "run_python"]
    assert written == "hello"
    wrote, read, fetched, ran = tool_results
    assert "wrote 5 bytes" in wrote
    assert "resolves outside the workspace" in read
    assert "root:" not in read
    assert "Cloud metadata" in fetched
    if find_bwrap() is not None:
        assert json.loads(ran)["stdout"] == "42\n"
    else:
        assert "bubblewrap" in ran
