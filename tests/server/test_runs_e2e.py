"""`agentkeep serve` as a user meets it: a real subprocess, real HTTP, the scripted model server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import ServerProcess


def _sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_a_sync_run_calls_the_tool_and_returns_the_run_result(server: ServerProcess, mock_llm: MockLLM) -> None:
    """2 model requests and 1 tool call; the RunResult has the contract's fields; the run is recorded."""
    mock_llm.enqueue(Reply.tool_call("add", {"a": 2, "b": 3}), Reply.text("the sum is 5"))
    response = server.post_run(message="what is 2+3?")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "succeeded"
    assert result["output"] == "the sum is 5"
    assert result["tools_used"] == ["add"]
    assert result["usage"]["requests"] == 2 and result["usage"]["tool_calls"] == 1
    assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
    assert set(result) == {"run_id", "session_id", "status", "output", "tools_used", "usage", "cost_usd", "duration_ms"}
    assert (server.workdir / "tools.log").read_text() == "add 2 3\n"
    assert mock_llm.request_count == 2

    run = server.client.get(f"/v1/runs/{result['run_id']}").json()
    assert run["status"] == "succeeded" and run["output"] == "the sum is 5"
    assert run["session_id"] == result["session_id"] and run["finished_at"]

    session = server.client.get(f"/v1/sessions/{result['session_id']}").json()
    roles = [m["role"] for m in session["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert session["messages"][0]["content"] == "what is 2+3?"
    assert session["messages"][1]["tool_calls"] == [{"name": "add", "args": {"a": 2, "b": 3}}]
    assert session["messages"][2]["content"] == "5"


def test_a_streamed_run_sends_tokens_as_events_then_one_completion(server: ServerProcess, mock_llm: MockLLM) -> None:
    """SSE: run.started, tool.call and tool.result (one call id, ok, the result), several text.delta, and
    exactly one run.completed."""
    mock_llm.enqueue(Reply.tool_call("add", {"a": 1, "b": 1}), Reply.text("one plus one is two", chunks=5))
    with server.client.stream("POST", "/v1/runs", json={"message": "1+1?", "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    events = _sse(body)
    names = [name for name, _ in events]
    assert names[0] == "run.started" and names[-1] == "run.completed"
    assert names.count("run.completed") == 1 and "run.failed" not in names
    call = next(data for name, data in events if name == "tool.call")
    assert call == {"tool_call_id": call["tool_call_id"], "name": "add", "args": {"a": 1, "b": 1}}
    result = next(data for name, data in events if name == "tool.result")
    assert result == {"tool_call_id": call["tool_call_id"], "name": "add", "ok": True, "content": "2"}
    deltas = [data["text"] for name, data in events if name == "text.delta"]
    assert len(deltas) >= 3
    assert "".join(deltas) == "one plus one is two" == events[-1][1]["output"]
    assert events[0][1]["run_id"] == events[-1][1]["run_id"]


def test_a_failed_stream_ends_with_run_failed_in_the_envelope(server: ServerProcess, mock_llm: MockLLM) -> None:
    """A provider error mid-stream ends the stream with one run.failed carrying a contract error type."""
    mock_llm.enqueue(Reply.error(400, "bad request from provider"))
    with server.client.stream("POST", "/v1/runs", json={"message": "hi", "stream": True}) as response:
        events = _sse("".join(response.iter_text()))
    assert events[-1][0] == "run.failed"
    assert events[-1][1]["error"]["type"] == "model_error"
    assert "run.completed" not in [name for name, _ in events]


def test_the_session_continues_across_runs_and_a_failed_run_changes_nothing(
    server: ServerProcess, mock_llm: MockLLM
) -> None:
    """The model receives the whole history; a failed run adds nothing to the session."""
    assert server.post_run(message="first", session_id="conv-1").status_code == 200
    mock_llm.enqueue(Reply.error(400, "provider refused"))
    failed = server.post_run(message="doomed", session_id="conv-1")
    assert failed.status_code >= 400
    assert failed.json()["error"]["type"] == "model_error"
    assert server.post_run(message="second", session_id="conv-1").status_code == 200
    sent = [m["content"] for m in mock_llm.requests[-1]["messages"] if m["role"] == "user"]
    assert sent == ["first", "second"]
    history = server.client.get("/v1/sessions/conv-1").json()["messages"]
    assert [m["content"] for m in history if m["role"] == "user"] == ["first", "second"]


def test_a_conversation_survives_a_restart(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Stop the server, start a new one on the same database: the session is still there."""
    env = server_env(mock_llm, f"sqlite:///{tmp_path / 'agentkeep.db'}")
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as first:
        assert first.post_run(message="remember me", session_id="keep").status_code == 200
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as second:
        assert second.post_run(message="still there?", session_id="keep").status_code == 200
        users = [m["content"] for m in second.client.get("/v1/sessions/keep").json()["messages"] if m["role"] == "user"]
    assert users == ["remember me", "still there?"]


def test_a_named_agent_is_served_and_an_unknown_one_is_404(server: ServerProcess, mock_llm: MockLLM) -> None:
    """A dict TARGET serves each agent by name."""
    assert server.post_run(message="hi", agent="helper").status_code == 200
    missing = server.post_run(message="hi", agent="ghost")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"


def test_delete_removes_a_session(server: ServerProcess) -> None:
    """DELETE → 204, then the session is 404."""
    assert server.post_run(message="hi", session_id="gone").status_code == 200
    assert server.client.delete("/v1/sessions/gone").status_code == 204
    assert server.client.get("/v1/sessions/gone").status_code == 404
    assert server.client.delete("/v1/sessions/gone").status_code == 404


def test_openapi_and_docs_are_served(server: ServerProcess) -> None:
    """/openapi.json documents the run route; /docs is HTML."""
    spec = server.client.get("/openapi.json").json()
    assert "/v1/runs" in spec["paths"] and "/v1/sessions/{session_id}" in spec["paths"]
    assert server.client.get("/docs").status_code == 200


def test_security_headers_and_no_framework_version(server: ServerProcess) -> None:
    """nosniff on every answer; the server header names no framework or version."""
    response = server.client.get("/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "uvicorn" not in response.headers.get("server", "").lower()


def test_health_and_ready_answer(server: ServerProcess) -> None:
    """A started server is healthy and ready, with its database checked."""
    health = server.client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "healthy" and body["checks"]["database"] == "ok"
    assert server.client.get("/ready").json() == {"ready": True}


def test_streaming_reaches_the_client_before_the_run_finishes(mock_llm: MockLLM, server: ServerProcess) -> None:
    """`curl -N` shows tokens as they come: the first delta arrives while later chunks are still delayed."""
    mock_llm.enqueue(Reply.text("a b c d e f", chunks=6).with_latency(0, chunk_delay=0.4))
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream("POST", "/v1/runs", json={"message": "slowly", "stream": True}) as response,
    ):
        seen_delta_before_end = False
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
            if "text.delta" in buffer and "run.completed" not in buffer:
                seen_delta_before_end = True
        assert "run.completed" in buffer
    assert seen_delta_before_end
