"""Tool calls that wait for a person: `agentkeep serve` as a subprocess, the scripted model, the side-effect file.

Every test drives the contract: a run ends `waiting_approval` with `pending`, `POST /v1/runs/{id}/resume`
continues the same run, the tool runs once after its approval and never before, and the session is
usable however the wait ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply, ToolCall
from tests.server import sse
from tests.server.conftest import server_env
from tests.support.cli import make_key
from tests.support.server import AGENTS_DIR, ServerProcess

APPROVAL_AGENT = str(AGENTS_DIR / "approval_agent.py")
DELETE = Reply.tool_call("delete_file", {"path": "notes.txt"}, id="call_del")


def _env(mock: MockLLM, tmp_path: Path, **extra: str) -> dict[str, str]:
    return server_env(
        mock,
        f"sqlite:///{tmp_path / 'agentkeep.db'}",
        SIDE_EFFECT_FILE=str(tmp_path / "side.txt"),
        AGENTKEEP_RATE_LIMIT="100000/minute",
        **extra,
    )


@pytest.fixture
def server(mock_llm: MockLLM, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(APPROVAL_AGENT, tmp_path, env=_env(mock_llm, tmp_path)) as proc:
        yield proc


def effects(tmp_path: Path) -> list[str]:
    """The tool calls that really ran: `<tool> <path>` per line."""
    side = tmp_path / "side.txt"
    return [" ".join(line.split()[:2]) for line in side.read_text().splitlines()] if side.exists() else []


def _waiting(server: ServerProcess, **body: Any) -> dict[str, Any]:
    response = server.post_run(**{"message": "delete notes.txt", **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["status"] == "waiting_approval", result
    return result


@pytest.mark.parametrize("agent", ["files", "plain", "checked"])
def test_a_tool_needing_approval_pauses_the_run_and_runs_once_after_it(
    agent: str, server: ServerProcess, mock_llm: MockLLM, tmp_path: Path
) -> None:
    """The run answers `waiting_approval` with the pending call and the tool has not run; while it waits
    the session refuses new runs and its deletion (409 approval_pending) and the run is listed as waiting; the resume
    continues the same run id, the tool runs once, and the session then takes a second turn.
    (`files` declares DeferredToolRequests itself; `plain` and `checked`, with an output validator, do not.)"""
    mock_llm.enqueue(DELETE, Reply.text("notes.txt is gone"))
    waiting = _waiting(server, agent=agent, session_id="s1")
    assert waiting["output"] is None
    assert waiting["pending"] == [
        {"tool_call_id": "call_del", "tool_name": "delete_file", "args": {"path": "notes.txt"}, "kind": "approval"}
    ]
    assert effects(tmp_path) == []
    run_id = waiting["run_id"]

    view = server.client.get(f"/v1/runs/{run_id}").json()
    assert view["status"] == "waiting_approval" and view["pending"] == waiting["pending"]
    listed = server.client.get("/v1/runs", params={"status": "waiting_approval"}).json()["runs"]
    assert [run["run_id"] for run in listed] == [run_id]
    busy = server.post_run(message="anything else?", agent=agent, session_id="s1")
    assert busy.status_code == 409 and busy.json()["error"]["type"] == "approval_pending"
    kept = server.client.delete("/v1/sessions/s1")
    assert kept.status_code == 409 and kept.json()["error"]["type"] == "approval_pending"

    resumed = server.client.post(f"/v1/runs/{run_id}/resume", json={"approvals": {"call_del": True}})
    assert resumed.status_code == 200, resumed.text
    result = resumed.json()
    assert result["run_id"] == run_id and result["status"] == "succeeded" and "pending" not in result
    assert result["output"] == "notes.txt is gone" and result["tools_used"] == ["delete_file"]
    assert result["usage"]["requests"] == 2 and result["usage"]["tool_calls"] == 1
    assert effects(tmp_path) == ["delete_file notes.txt"]
    assert mock_llm.request_count == 2

    mock_llm.enqueue(Reply.text("anything else is fine"))
    second = server.post_run(message="anything else?", agent=agent, session_id="s1")
    assert second.status_code == 200 and second.json()["status"] == "succeeded"
    history = server.client.get("/v1/sessions/s1").json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert history[2]["content"] == "file 'notes.txt' deleted"
    assert server.client.get("/v1/runs", params={"status": "waiting_approval"}).json()["runs"] == []


@pytest.mark.parametrize("agent", ["plain", "checked"])
def test_a_streamed_run_ends_with_run_waiting_and_a_streamed_resume_runs_the_tool(
    agent: str, server: ServerProcess, mock_llm: MockLLM, tmp_path: Path
) -> None:
    """The stream shows the tool call, then ends with run.waiting (the RunResult with `pending`); the
    streamed resume shows the call's result (ok) and the answer, then run.completed."""
    mock_llm.enqueue(DELETE, Reply.text("gone now", chunks=3))
    first = sse.post(server.client, "/v1/runs", {"message": "delete notes.txt", "agent": agent})
    assert sse.names(first)[0] == "run.started" and sse.names(first)[-1] == "run.waiting"
    assert "run.completed" not in sse.names(first) and "tool.result" not in sse.names(first)
    assert sse.data_of(first, "tool.call") == [
        {"tool_call_id": "call_del", "name": "delete_file", "args": {"path": "notes.txt"}}
    ]
    waiting = first[-1][1]
    assert waiting["status"] == "waiting_approval" and waiting["pending"][0]["tool_call_id"] == "call_del"
    assert effects(tmp_path) == []

    second = sse.post(server.client, f"/v1/runs/{waiting['run_id']}/resume", {"approvals": {"call_del": True}})
    assert sse.names(second)[0] == "run.started" and sse.names(second)[-1] == "run.completed"
    assert sse.data_of(second, "tool.result") == [
        {"tool_call_id": "call_del", "name": "delete_file", "ok": True, "content": "file 'notes.txt' deleted"}
    ]
    assert "".join(d["text"] for d in sse.data_of(second, "text.delta")) == "gone now" == second[-1][1]["output"]
    assert effects(tmp_path) == ["delete_file notes.txt"]


def test_a_denial_an_edit_and_an_external_result_each_reach_the_model(
    server: ServerProcess, mock_llm: MockLLM, tmp_path: Path
) -> None:
    """Three pending calls in one response: a delete denied with a message (never runs), an `.env` edit
    (ApprovalRequired) approved with edited args (runs once, with them), an external price lookup
    answered by the client. The model's next request carries the three answers."""
    mock_llm.enqueue(
        Reply.tool_calls(
            ToolCall("delete_file", {"path": "notes.txt"}, id="call_del"),
            ToolCall("update_file", {"path": ".env", "content": "DEBUG=1"}, id="call_env"),
            ToolCall("price_of", {"item": "coffee"}, id="call_price"),
        ),
        Reply.text("done as you said"),
    )
    waiting = _waiting(server, agent="files")
    kinds = {p["tool_call_id"]: (p["tool_name"], p["kind"]) for p in waiting["pending"]}
    assert kinds == {
        "call_del": ("delete_file", "approval"),
        "call_env": ("update_file", "approval"),
        "call_price": ("price_of", "external"),
    }
    decisions = {
        "approvals": {
            "call_del": {"approved": False, "message": "keep notes.txt"},
            "call_env": {"approved": True, "args": {"path": ".env", "content": "DEBUG=0"}},
        },
        "results": {"call_price": {"usd": 3.5}},
    }
    resumed = server.client.post(f"/v1/runs/{waiting['run_id']}/resume", json=decisions)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["output"] == "done as you said"
    assert effects(tmp_path) == ["update_file .env"]
    # ApprovalRequired is raised from inside the tool: it was entered once before the decision, once after.
    assert (tmp_path / "side.txt.entered").read_text().splitlines() == ["update_file .env"] * 2
    answers = {m["tool_call_id"]: m["content"] for m in mock_llm.requests[-1]["messages"] if m["role"] == "tool"}
    assert answers == {"call_del": "keep notes.txt", "call_env": "file '.env' updated", "call_price": '{"usd":3.5}'}


def test_resumes_with_unknown_missing_or_misplaced_answers_are_400_and_change_nothing(
    server: ServerProcess, mock_llm: MockLLM, tmp_path: Path
) -> None:
    """Each bad answer is a 400 naming the call, and the run still waits; a good resume then works once:
    a second is 409 not_waiting, as is a resume of a run that never waited; an unknown run is 404."""
    mock_llm.enqueue(
        Reply.tool_calls(
            ToolCall("delete_file", {"path": "a"}, id="call_a"), ToolCall("price_of", {"item": "tea"}, id="call_p")
        ),
        Reply.text("ok"),
    )
    run_id = _waiting(server, agent="plain")["run_id"]
    resume = f"/v1/runs/{run_id}/resume"
    for body, names in [
        ({"approvals": {"call_a": True, "call_zzz": True}, "results": {"call_p": 1}}, "call_zzz"),
        ({"approvals": {"call_a": True}}, "call_p"),
        ({}, "call_a, call_p"),
        ({"approvals": {"call_a": True, "call_p": True}}, "call_p"),
        ({"approvals": {"call_a": True}, "results": {"call_p": 1, "call_a": 2}}, "call_a"),
    ]:
        refused = server.client.post(resume, json=body)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error"]["type"] == "invalid_request" and names in refused.json()["error"]["message"]
    assert server.client.get(f"/v1/runs/{run_id}").json()["status"] == "waiting_approval"
    assert server.client.post(resume, json={"approvals": {"call_a": "maybe"}}).status_code == 422

    good = {"approvals": {"call_a": True}, "results": {"call_p": 2}}
    assert server.client.post(resume, json=good).json()["status"] == "succeeded"
    again = server.client.post(resume, json=good)
    assert again.status_code == 409 and again.json()["error"]["type"] == "not_waiting"
    assert effects(tmp_path) == ["delete_file a"]

    mock_llm.enqueue(Reply.text("plain answer"))
    never = server.post_run(message="hi", agent="plain").json()["run_id"]
    assert server.client.post(f"/v1/runs/{never}/resume", json={}).json()["error"]["type"] == "not_waiting"
    assert server.client.post("/v1/runs/run_nope/resume", json={}).status_code == 404


def test_cancelling_a_waiting_run_denies_its_calls_and_the_session_goes_on(
    server: ServerProcess, mock_llm: MockLLM, tmp_path: Path
) -> None:
    """Cancel → 200 `cancelled`; the tool never ran; the session keeps the call answered as denied, so
    the next message on it succeeds (and the model sees the denial); resuming afterwards is 409."""
    mock_llm.enqueue(DELETE)
    waiting = _waiting(server, agent="checked", session_id="s2")
    cancelled = server.client.post(f"/v1/runs/{waiting['run_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"]["type"] == "cancelled" and cancelled.json()["pending"] is None
    mock_llm.enqueue(Reply.text("understood, nothing deleted"))
    after = server.post_run(message="never mind", agent="checked", session_id="s2")
    assert after.status_code == 200 and after.json()["output"] == "understood, nothing deleted"
    tool_messages = [m for m in mock_llm.requests[-1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_del"]
    assert "cancelled" in tool_messages[0]["content"]
    assert effects(tmp_path) == []
    late = server.client.post(f"/v1/runs/{waiting['run_id']}/resume", json={"approvals": {"call_del": True}})
    assert late.status_code == 409 and late.json()["error"]["type"] == "not_waiting"


def test_a_forgotten_wait_is_cancelled_after_the_approval_timeout(mock_llm: MockLLM, tmp_path: Path) -> None:
    """AGENTKEEP_APPROVAL_TIMEOUT_S=1: without a request to prompt it, the run turns `cancelled` (its
    calls denied) and the session takes the next message."""
    env = _env(mock_llm, tmp_path, AGENTKEEP_APPROVAL_TIMEOUT_S="1")
    with ServerProcess(APPROVAL_AGENT, tmp_path, env=env) as server:
        mock_llm.enqueue(DELETE)
        run_id = _waiting(server, agent="files", session_id="s3")["run_id"]
        deadline = time.monotonic() + 15
        while (run := server.client.get(f"/v1/runs/{run_id}").json())["status"] == "waiting_approval":
            assert time.monotonic() < deadline, "the wait was never timed out"
            time.sleep(0.1)
        assert run["status"] == "cancelled" and "AGENTKEEP_APPROVAL_TIMEOUT_S" in run["error"]["message"]
        mock_llm.enqueue(Reply.text("fresh start"))
        assert server.post_run(message="hello again", agent="files", session_id="s3").json()["status"] == "succeeded"
    assert effects(tmp_path) == []


def test_another_users_waiting_run_cannot_be_resumed_or_cancelled(mock_llm: MockLLM, tmp_path: Path) -> None:
    """With keys required, bob's resume and cancel of alice's waiting run are 404 and it still waits."""
    url = f"sqlite:///{tmp_path / 'agentkeep.db'}"
    alice, bob = make_key(url, "alice"), make_key(url, "bob")
    env = _env(mock_llm, tmp_path, AGENTKEEP_AUTH="required")
    with ServerProcess(APPROVAL_AGENT, tmp_path, env=env) as server:
        mock_llm.enqueue(DELETE)
        as_alice, as_bob = ({"Authorization": f"Bearer {key}"} for key in (alice, bob))
        started = server.client.post("/v1/runs", json={"message": "delete it"}, headers=as_alice).json()
        run_id = started["run_id"]
        resume = server.client.post(f"/v1/runs/{run_id}/resume", json={"approvals": {"call_del": True}}, headers=as_bob)
        assert resume.status_code == 404 and resume.json()["error"]["type"] == "not_found"
        assert server.client.post(f"/v1/runs/{run_id}/cancel", headers=as_bob).status_code == 404
        assert server.client.get(f"/v1/runs/{run_id}", headers=as_alice).json()["status"] == "waiting_approval"
    assert effects(tmp_path) == []
