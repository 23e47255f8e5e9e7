"""A cancel that arrives while a background run is finishing: one consistent final state, never a flip.

The run is held at the finish boundary (its last model response is in, its outcome not yet
recorded) by the agent's output validator, which waits for a file the test creates.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import durable_env, run_status, submit, wait_for
from tests.support.server import AGENTS_DIR, ServerProcess

GATED_AGENT = str(AGENTS_DIR / "finish_gate_agent.py")


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def _held_at_the_finish(mock: MockLLM, tmp_path: Path) -> tuple[ServerProcess, Path]:
    gate = tmp_path / "gate"
    gate.mkdir()
    env = durable_env(mock, f"sqlite:///{tmp_path / 'agentkeep.db'}", tmp_path, GATE_DIR=str(gate))
    mock.enqueue(Reply.text("the answer"))
    return ServerProcess(GATED_AGENT, tmp_path, env=env), gate


def _recorded_attempt(server: ServerProcess, run_id: str) -> bool:
    """Whether the run has tried to record its outcome (its `run.finished` line comes after that)."""
    return any('"run.finished"' in line and run_id in line for line in server.output().splitlines())


def _logged_statuses(server: ServerProcess, run_id: str) -> list[str]:
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    return [line["status"] for line in lines if line.get("event") == "run.finished" and line.get("run_id") == run_id]


def _session_contents(server: ServerProcess, session_id: str) -> list[str]:
    body: dict[str, Any] = server.client.get(f"/v1/sessions/{session_id}").json()
    return [message["content"] for message in body["messages"]]


def _dbos_status(tmp_path: Path, run_id: str) -> str | None:
    with sqlite3.connect(tmp_path / "agentkeep-dbos.db") as conn:
        row = conn.execute("SELECT status FROM workflow_status WHERE workflow_uuid = ?", (run_id,)).fetchone()
    return None if row is None else str(row[0])


def test_a_cancel_answered_before_the_run_records_its_success_stands(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Cancelled while held at the finish; released after the cancel's answer: the run's success is
    not recorded over it. It stays cancelled, and its messages never reach the session."""
    server, gate = _held_at_the_finish(mock_llm, tmp_path)
    with server:
        run_id = submit(server, "finish me", session_id="s-race")
        wait_for(lambda: (gate / "finishing").exists(), 30, "the run to reach its finish")
        cancelled = server.client.post(f"/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
        (gate / "release").touch()
        wait_for(lambda: _recorded_attempt(server, run_id), 30, "the run's attempt to record its outcome")
        run = run_status(server, run_id)
        assert run["status"] == "cancelled" and run["error"]["type"] == "cancelled", run
        assert _session_contents(server, "s-race") == []
        # The process's own account (log line, metrics) agrees with the database: cancelled, not succeeded.
        assert _logged_statuses(server, run_id) == ["cancelled"]
        runs_total = [
            line for line in server.client.get("/metrics").text.splitlines() if line.startswith("agentkeep_runs_total{")
        ]
        assert any('status="cancelled"' in line for line in runs_total), runs_total
        assert not any('status="succeeded"' in line for line in runs_total), runs_total
        assert server.post_run(message="next", session_id="s-race").status_code == 200  # the session is free


def test_a_run_finishing_while_the_cancel_waits_ends_one_way_and_the_answer_says_which(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """Released once DBOS has the cancel, while `POST .../cancel` waits for the run to stop: whichever
    write lands first is the final state, the cancel's answer names it, and the session agrees."""
    server, gate = _held_at_the_finish(mock_llm, tmp_path)
    with server:
        run_id = submit(server, "finish me", session_id="s-race")
        wait_for(lambda: (gate / "finishing").exists(), 30, "the run to reach its finish")
        answers: list[httpx.Response] = []
        cancel = threading.Thread(target=lambda: answers.append(server.client.post(f"/v1/runs/{run_id}/cancel")))
        cancel.start()
        wait_for(lambda: _dbos_status(tmp_path, run_id) == "CANCELLED", 30, "DBOS to record the cancel")
        (gate / "release").touch()
        cancel.join(timeout=60)
        wait_for(lambda: _recorded_attempt(server, run_id), 30, "the run's attempt to record its outcome")
        final = run_status(server, run_id)["status"]
        assert answers and answers[0].status_code == 200 and answers[0].json()["status"] == final
        expected = ["finish me", "the answer"] if final == "succeeded" else []
        assert final in {"succeeded", "cancelled"} and _session_contents(server, "s-race") == expected
