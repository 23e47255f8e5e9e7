"""A task run lives like an agent run: counted while it runs, waited for by a drain, refused while
draining, and left to resume when the drain runs out of time. Real `agentkeep serve`, real signals."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.stores import schema
from agentkeep.testing.mock_llm import MockLLM
from tests.durable.support import durable_env, lines, wait_finished, wait_for
from tests.support.server import AGENTS_DIR, ServerProcess, free_port

TASK_AGENT = str(AGENTS_DIR / "task_agent.py")


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def _server(mock: MockLLM, tmp_path: Path, port: int | None = None, **extra: str) -> ServerProcess:
    env = durable_env(mock, f"sqlite:///{tmp_path / 'agentkeep.db'}", tmp_path, GATE_DIR=str(tmp_path), **extra)
    return ServerProcess(TASK_AGENT, tmp_path, env=env, port=port)


def _submit_held(server: ServerProcess) -> str:
    response = server.client.post("/v1/tasks/held", json={"input": {}})
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def _stored_status(tmp_path: Path, run_id: str) -> str:
    """The run's status as the database has it, read after the server is gone."""
    with sqlite3.connect(tmp_path / "agentkeep.db") as conn:
        row = conn.execute(f"SELECT status FROM {schema.runs.name} WHERE run_id = ?", (run_id,)).fetchone()
    assert row is not None, run_id
    status: str = row[0]
    return status


def test_a_running_task_is_counted_waited_for_by_the_drain_and_new_tasks_are_refused(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """While a task's step runs, /v1/stats and /health count it in `active_runs`; SIGTERM then
    answers new tasks (and runs) 503 `draining` but waits for the task, which finishes `succeeded`
    once its step is released, before the process exits 0."""
    side = tmp_path / "side.txt"
    server = _server(mock_llm, tmp_path, AGENTKEEP_DRAIN_TIMEOUT_S="60")
    with server:
        run_id = _submit_held(server)
        wait_for(lambda: "held started" in lines(side), 30, "the held step to start")
        assert server.client.get("/v1/stats").json()["active_runs"] == 1
        health = server.client.get("/health")
        assert health.status_code == 200 and health.json()["active_runs"] == 1, health.text

        server.signal(signal.SIGTERM)
        wait_for(lambda: server.client.get("/ready").status_code == 503, 10, "the drain to begin")
        refused = server.client.post("/v1/tasks/held", json={"input": {}})
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "draining", refused.text
        assert server.client.get("/health").json()["status"] == "draining"
        assert server.client.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        assert server.proc.poll() is None  # the drain waits for the task

        (tmp_path / "release").touch()
        assert server.wait_exit(timeout=30) == 0, server.output()
    assert _stored_status(tmp_path, run_id) == "succeeded"
    assert lines(side) == ["first started", "first", "held started", "held"]


def test_a_task_still_running_at_the_drain_timeout_is_left_to_resume_after_the_restart(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """SIGTERM with a task's step still blocked past AGENTKEEP_DRAIN_TIMEOUT_S: the step is
    interrupted, the process exits 0 and the run is not closed (as an agent run's is not); the
    restarted server resumes it: the finished step is not run again, the interrupted one is."""
    side, port = tmp_path / "side.txt", free_port()
    first = _server(mock_llm, tmp_path, port, AGENTKEEP_DRAIN_TIMEOUT_S="1")
    with first:
        run_id = _submit_held(first)
        wait_for(lambda: "held started" in lines(side), 30, "the held step to start")
        first.signal(signal.SIGTERM)
        assert first.wait_exit(timeout=30) == 0, first.output()
        assert '"interrupted_runs": 1' in first.output()
    assert _stored_status(tmp_path, run_id) == "running"
    assert "held" not in lines(side)

    (tmp_path / "release").touch()
    with _server(mock_llm, tmp_path, port) as second:
        run = wait_finished(second, run_id)
        assert run["status"] == "succeeded" and run["output"] == "first+held", run
    assert lines(side) == ["first started", "first", "held started", "held started", "held"]
