"""Waiting for a person across processes: background runs, webhooks, `kill -9`, a second server.

The run's wait lives in the database (its pending calls, its messages up to the pause), so a resume
may come after a crash, or land on another process sharing the database; the tool then runs once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import durable_env, lines, run_status, wait_finished, wait_for
from tests.durable.test_webhooks_e2e import Receiver
from tests.support.server import AGENTS_DIR, ServerProcess, free_port

APPROVAL_AGENT = str(AGENTS_DIR / "approval_agent.py")
DELETE = Reply.tool_call("delete_file", {"path": "notes.txt"}, id="call_del")
APPROVE = {"approvals": {"call_del": True}}


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def _server(mock: MockLLM, tmp_path: Path, port: int | None = None, **extra: str) -> ServerProcess:
    env = durable_env(mock, f"sqlite:///{tmp_path / 'agentkeep.db'}", tmp_path, **extra)
    return ServerProcess(APPROVAL_AGENT, tmp_path, env=env, port=port)


def _ran(tmp_path: Path) -> list[list[str]]:
    """Each tool call that really ran: [tool, path, idempotency key]."""
    return [line.split() for line in lines(tmp_path / "side.txt")]


def _wait_until_waiting(server: ServerProcess, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = wait_for(
        lambda: (body := run_status(server, run_id))["status"] == "waiting_approval" and body, 60, "the run to wait"
    )
    return run


def test_a_background_run_waits_tells_its_webhook_and_a_background_resume_finishes_it(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """The workflow ends with the wait: the webhook gets the run `waiting_approval` with `pending`; the
    resume (`background: true`) answers 202 and a new workflow finishes the same run, whose webhook
    then gets `succeeded`. The tool ran once, under an idempotency key of the resumed part."""
    receiver = Receiver(failures=0)
    mock_llm.enqueue(DELETE, Reply.text("deleted"))
    extra = {"AGENTKEEP_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32", "AGENTKEEP_FETCH_PORTS": f"80,443,{receiver.port}"}
    try:
        with _server(mock_llm, tmp_path, **extra) as server:
            body = {"message": "delete notes.txt", "background": True, "webhook_url": receiver.url}
            accepted = server.client.post("/v1/runs", json=body)
            assert accepted.status_code == 202, accepted.text
            run_id = accepted.json()["run_id"]
            waiting = _wait_until_waiting(server, run_id)
            assert [p["tool_call_id"] for p in waiting["pending"]] == ["call_del"]
            _, told = wait_for(receiver.delivered, 30, "the waiting webhook")[0]
            assert told["status"] == "waiting_approval" and told["pending"] == waiting["pending"]
            assert _ran(tmp_path) == []

            resumed = server.client.post(f"/v1/runs/{run_id}/resume", json={**APPROVE, "background": True})
            assert resumed.status_code == 202 and resumed.json() == {
                "run_id": run_id,
                "session_id": waiting["session_id"],
                "status": "queued",
            }
            assert resumed.headers["location"] == f"/v1/runs/{run_id}"
            run = wait_finished(server, run_id)
            assert run["status"] == "succeeded" and run["output"] == "deleted", run
            assert run["usage"]["requests"] == 2 and run["tools_used"] == ["delete_file"]
            finals = wait_for(lambda: receiver.delivered()[1:], 30, "the final webhook")
            assert finals[0][1]["status"] == "succeeded" and finals[0][1]["output"] == "deleted"
    finally:
        receiver.close()
    ((tool, path, key),) = _ran(tmp_path)
    assert (tool, path) == ("delete_file", "notes.txt") and key.startswith(f"{run_id}.r1:")


def test_kill_9_between_waiting_and_resume_loses_nothing(mock_llm: MockLLM, tmp_path: Path) -> None:
    """SIGKILL the server while a run waits: after a restart it still waits, its session still refuses
    new runs, and the resume runs the tool once and answers."""
    mock_llm.enqueue(DELETE)
    port = free_port()
    first = _server(mock_llm, tmp_path, port)
    with first:
        waiting = first.post_run(message="delete notes.txt", session_id="kept").json()
        assert waiting["status"] == "waiting_approval"
        first.proc.kill()
        first.proc.wait()
    mock_llm.enqueue(Reply.text("deleted after the crash"))
    with _server(mock_llm, tmp_path, port) as second:
        assert run_status(second, waiting["run_id"])["status"] == "waiting_approval"
        refused = second.post_run(message="hello?", session_id="kept")
        assert refused.status_code == 409 and refused.json()["error"]["type"] == "approval_pending"
        resumed = second.client.post(f"/v1/runs/{waiting['run_id']}/resume", json=APPROVE)
        assert resumed.status_code == 200 and resumed.json()["output"] == "deleted after the crash"
        mock_llm.enqueue(Reply.text("next turn"))
        assert second.post_run(message="hello?", session_id="kept").json()["status"] == "succeeded"
    assert [run[:2] for run in _ran(tmp_path)] == [["delete_file", "notes.txt"]]
    assert mock_llm.request_count == 3


def test_kill_9_inside_a_background_resume_replays_it_without_running_the_tool_again(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """SIGKILL after the approved tool ran, while the resumed run's next model request is in flight: the
    restarted process resumes that workflow; the tool's checkpoint stands, so it ran exactly once."""
    mock_llm.enqueue(DELETE, Reply.text("too slow").with_latency(30))
    port = free_port()
    first = _server(mock_llm, tmp_path, port)
    with first:
        run_id = first.post_run(message="delete notes.txt", background=True).json()["run_id"]
        _wait_until_waiting(first, run_id)
        assert first.client.post(f"/v1/runs/{run_id}/resume", json={**APPROVE, "background": True}).status_code == 202
        wait_for(lambda: mock_llm.request_count == 2 and _ran(tmp_path), 60, "the tool, then the model request")
        first.proc.kill()
        first.proc.wait()
    mock_llm.reset()
    mock_llm.enqueue(Reply.text("deleted, after all"))
    with _server(mock_llm, tmp_path, port) as second:
        run = wait_finished(second, run_id)
        assert run["status"] == "succeeded" and run["output"] == "deleted, after all", run
    assert len(_ran(tmp_path)) == 1
    assert mock_llm.request_count == 1  # only the request that was cut off was sent again


def test_a_resume_lands_on_another_process_sharing_the_database(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Two `serve` processes on one SQLite file: the run waits on the first, the second resumes it (the
    tool runs there, once), and the first then serves the session's next turn."""
    mock_llm.enqueue(DELETE)
    with _server(mock_llm, tmp_path) as one, _server(mock_llm, tmp_path) as two:
        waiting = one.post_run(message="delete notes.txt", session_id="shared").json()
        assert waiting["status"] == "waiting_approval"
        mock_llm.enqueue(Reply.text("deleted by the other one"))
        resumed = two.client.post(f"/v1/runs/{waiting['run_id']}/resume", json=APPROVE)
        assert resumed.status_code == 200 and resumed.json()["output"] == "deleted by the other one"
        again = one.client.post(f"/v1/runs/{waiting['run_id']}/resume", json=APPROVE)
        assert again.status_code == 409 and again.json()["error"]["type"] == "not_waiting"
        mock_llm.enqueue(Reply.text("next turn"))
        assert one.post_run(message="and now?", session_id="shared").json()["status"] == "succeeded"
    assert [run[:2] for run in _ran(tmp_path)] == [["delete_file", "notes.txt"]]
