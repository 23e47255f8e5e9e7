"""Multi-step tasks over HTTP: plan → execute each → summarize; per-step retries; resume after SIGKILL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import durable_env, lines, wait_finished, wait_for
from tests.support.server import AGENTS_DIR, ServerProcess, free_port

TASK_AGENT = str(AGENTS_DIR / "task_agent.py")


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def _server(mock: MockLLM, tmp_path: Path, port: int | None = None, **extra: str) -> ServerProcess:
    env = durable_env(mock, f"sqlite:///{tmp_path / 'agentkeep.db'}", tmp_path, **extra)
    return ServerProcess(TASK_AGENT, tmp_path, env=env, port=port)


def _submit(server: ServerProcess, name: str, task_input: dict[str, object] | None = None) -> str:
    response = server.client.post(f"/v1/tasks/{name}", json={"input": task_input or {}})
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    assert response.headers["location"] == f"/v1/runs/{run_id}" and response.json()["status"] == "queued"
    return run_id


def test_a_research_task_plans_executes_each_step_and_summarizes(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Each step runs once, in order, with the previous steps' results; the output is the summary."""
    mock_llm.enqueue(Reply.text("alpha\nbeta"), Reply.text("A"), Reply.text("B"), Reply.text("A and B"))
    with _server(mock_llm, tmp_path) as server:
        run = wait_finished(server, _submit(server, "research", {"topic": "durability"}))
        assert run["status"] == "succeeded", run
        assert run["output"] == "A and B" and run["agent"] == "task:research"
        prompts = [r["messages"][-1]["content"] for r in mock_llm.requests]
        assert prompts == ["plan: durability", "do: alpha", "do: beta", "summarize: A | B"]
    assert lines(tmp_path / "side.txt") == ["plan", "execute alpha", "execute beta", "summarize"]


def test_a_step_failing_twice_then_succeeding_is_retried(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Two ConnectionErrors, then a result: the task succeeds with it after 3 attempts."""
    with _server(mock_llm, tmp_path) as server:
        run = wait_finished(server, _submit(server, "flaky"))
        assert run["status"] == "succeeded", run
        assert run["output"] == {"result": "third time lucky"}
    assert lines(tmp_path / "side.txt") == ["flaky attempt"] * 3


def test_a_step_that_always_fails_fails_the_task_with_its_error(mock_llm: MockLLM, tmp_path: Path) -> None:
    """After its 2 retries the step's own error, naming the step, is the task's error."""
    with _server(mock_llm, tmp_path) as server:
        run = wait_finished(server, _submit(server, "doomed"))
        assert run["status"] == "failed", run
        assert run["error"]["type"] == "tool_error"
        assert "'broken'" in run["error"]["message"] and "ValueError: always broken" in run["error"]["message"]
        unknown = server.client.post("/v1/tasks/nope", json={"input": {}})
        assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found"
        assert server.client.post("/v1/tasks/flaky", json={"input": [1]}).status_code == 422
    assert lines(tmp_path / "side.txt") == ["broken attempt"] * 3


def test_a_task_killed_mid_step_resumes_without_redoing_finished_steps(mock_llm: MockLLM, tmp_path: Path) -> None:
    """SIGKILL inside the 2nd step: after a restart the 1st step's result is reused, the 2nd runs again."""
    port = free_port()
    side = tmp_path / "side.txt"
    with _server(mock_llm, tmp_path, port, TOOL_SLEEP_S="30") as first:
        run_id = _submit(first, "two_writes")
        wait_for(lambda: "second started" in lines(side), 30, "the 2nd step to start")
        first.proc.kill()
        first.proc.wait()
    with _server(mock_llm, tmp_path, port) as second:
        run = wait_finished(second, run_id)
        assert run["status"] == "succeeded" and run["output"] == "first+second", run
    assert lines(side) == ["first started", "first", "second started", "second started", "second"]


def test_the_research_task_example_serves_and_completes(mock_llm: MockLLM, tmp_path: Path) -> None:
    """examples/research_task.py as shipped: its agents and its task, on the mock model."""
    example = str(Path(__file__).resolve().parents[2] / "examples" / "research_task.py")
    mock_llm.enqueue(Reply.text("- what is WAL?\n- why NORMAL?"), Reply.text("n1"), Reply.text("n2"), Reply.text("sum"))
    env = durable_env(mock_llm, f"sqlite:///{tmp_path / 'agentkeep.db'}", tmp_path, AGENTKEEP_MODEL="openai-chat:mock")
    with ServerProcess(example, tmp_path, env=env) as server:
        run = wait_finished(server, _submit(server, "research", {"topic": "SQLite WAL"}))
        assert run["status"] == "succeeded" and run["output"] == "sum", run
        assert [r["messages"][-1]["content"] for r in mock_llm.requests][1:3] == ["what is WAL?", "why NORMAL?"]
        refused = wait_finished(server, _submit(server, "research", {}))
        assert refused["status"] == "failed" and "input.topic is required" in refused["error"]["message"]
