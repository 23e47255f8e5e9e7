"""However a run ends, its session takes the next message: one test per way a run can end.

After each ending the next run on the session succeeds, and the history the model is sent is one a
provider accepts: every tool call it holds has its answer.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import durable_env, run_status, wait_finished, wait_for
from tests.support.server import AGENTS_DIR, ServerProcess, free_port

APPROVAL_AGENT = str(AGENTS_DIR / "approval_agent.py")
SESSION = "matrix"
DELETE = Reply.tool_call("delete_file", {"path": "notes.txt"}, id="call_del")


def _server(mock: MockLLM, tmp_path: Path, port: int, **extra: str) -> ServerProcess:
    url = f"sqlite:///{tmp_path / 'agentkeep.db'}"
    env = durable_env(mock, url, tmp_path, AGENTKEEP_DRAIN_TIMEOUT_S="0.5", **extra)
    return ServerProcess(APPROVAL_AGENT, tmp_path, env=env, port=port)


def _wait(server: ServerProcess, mock: MockLLM) -> str:
    mock.enqueue(DELETE)
    waiting = server.post_run(message="delete notes.txt", session_id=SESSION).json()
    assert waiting["status"] == "waiting_approval", waiting
    run_id: str = waiting["run_id"]
    return run_id


def succeeded(server: ServerProcess, mock: MockLLM, tmp_path: Path, port: int) -> str:
    mock.enqueue(Reply.tool_call("read_file", {"path": "a"}), Reply.text("read it"))
    return str(server.post_run(message="read a", session_id=SESSION).json()["status"])


def failed_mid_tool(server: ServerProcess, mock: MockLLM, tmp_path: Path, port: int) -> str:
    mock.enqueue(Reply.tool_call("corrupt_file", {"path": "a"}))
    failed = server.post_run(message="break a", session_id=SESSION).json()
    assert failed["error"]["type"] == "tool_error"
    return str(run_status(server, _last_run(server))["status"])


def cancelled(server: ServerProcess, mock: MockLLM, tmp_path: Path, port: int) -> str:
    mock.enqueue(Reply.tool_call("read_file", {"path": "a"}), Reply.text("late").with_latency(20))
    run_id = server.post_run(message="read a", session_id=SESSION, background=True).json()["run_id"]
    wait_for(lambda: mock.request_count == 2, 30, "the second model request")
    server.client.post(f"/v1/runs/{run_id}/cancel")
    return str(wait_finished(server, run_id)["status"])


def interrupted(server: ServerProcess, mock: MockLLM, tmp_path: Path, port: int) -> str:
    mock.enqueue(Reply.tool_call("read_file", {"path": "a"}), Reply.text("late").with_latency(30))
    answers: list[httpx.Response] = []
    body = {"message": "read a", "session_id": SESSION}
    caller = threading.Thread(target=lambda: answers.append(httpx.post(f"{server.url}/v1/runs", json=body, timeout=60)))
    caller.start()
    wait_for(lambda: mock.request_count == 2, 30, "the second model request")
    server.signal(signal.SIGTERM)  # the drain runs out of time (0.5 s): the run is interrupted
    caller.join(30)
    assert server.wait_exit(30) == 0
    assert answers[0].status_code == 503 and answers[0].json()["error"]["type"] == "interrupted"
    return "interrupted"


def waiting_then_cancel(server: ServerProcess, mock: MockLLM, tmp_path: Path, port: int) -> str:
    run_id = _wait(server, mock)
    return str(server.client.post(f"/v1/runs/{run_id}/cancel").json()["status"])


def waiting_then_timeout(server: ServerProcess, mock: MockLLM, tmp_path: Path, port: int) -> str:
    run_id = _wait(server, mock)
    return str(wait_finished(server, run_id, timeout=30)["status"])


def waiting_then_resume(server: ServerProcess, mock: MockLLM, tmp_path: Path, port: int) -> str:
    run_id = _wait(server, mock)
    mock.enqueue(Reply.text("deleted"))
    return str(server.client.post(f"/v1/runs/{run_id}/resume", json={"approvals": {"call_del": True}}).json()["status"])


def _last_run(server: ServerProcess) -> str:
    run_id: str = server.client.get("/v1/runs", params={"session_id": SESSION, "limit": 1}).json()["runs"][0]["run_id"]
    return run_id


Ending = Callable[[ServerProcess, MockLLM, Path, int], str]
ENDINGS: list[tuple[Ending, str, dict[str, str]]] = [
    (succeeded, "succeeded", {}),
    (failed_mid_tool, "failed", {}),
    (cancelled, "cancelled", {}),
    (interrupted, "interrupted", {}),
    (waiting_then_cancel, "cancelled", {}),
    (waiting_then_timeout, "cancelled", {"AGENTKEEP_APPROVAL_TIMEOUT_S": "1"}),
    (waiting_then_resume, "succeeded", {}),
]


@pytest.mark.parametrize(("end", "status", "extra"), ENDINGS, ids=[end.__name__ for end, _, _ in ENDINGS])
def test_after_every_way_a_run_ends_the_next_run_on_its_session_succeeds(
    end: Ending, status: str, extra: dict[str, str], tmp_path: Path
) -> None:
    """The run ends as named; then (after a restart, for the interrupted one) a new message on its
    session succeeds, and every tool call in the history sent to the model has its answer."""
    port = free_port()
    with MockLLM() as mock:
        with _server(mock, tmp_path, port, **extra) as server:
            assert end(server, mock, tmp_path, port) == status
            if end is not interrupted:
                _assert_session_continues(server, mock)
        if end is interrupted:
            with _server(mock, tmp_path, port, **extra) as restarted:
                assert run_status(restarted, _last_run(restarted))["status"] == "interrupted"
                _assert_session_continues(restarted, mock)


def _assert_session_continues(server: ServerProcess, mock: MockLLM) -> None:
    mock.enqueue(Reply.text("still here"))
    after = server.post_run(message="are you there?", session_id=SESSION)
    assert after.status_code == 200, after.text
    assert after.json()["status"] == "succeeded" and after.json()["output"] == "still here"
    sent: list[dict[str, Any]] = mock.requests[-1]["messages"]
    called = {call["id"] for m in sent if m["role"] == "assistant" for call in m.get("tool_calls") or []}
    answered = {m["tool_call_id"] for m in sent if m["role"] == "tool"}
    assert called == answered, sent
    assert sent[-1] == {"role": "user", "content": "are you there?"}
