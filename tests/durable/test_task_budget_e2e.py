"""A task's agent calls go through the run pipeline: its run records their usage and cost, and a budget caps them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import durable_env, lines, wait_finished, wait_for
from tests.support.server import AGENTS_DIR, ServerProcess, free_port

TASK_AGENT = str(AGENTS_DIR / "task_agent.py")

# $300 per million output tokens, 100 output tokens a reply: each agent call costs $0.03; with
# max_tokens 120, each model request reserves $0.036 before it is sent.
USD_PER_REQUEST = 0.03


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def _priced(text: str) -> Reply:
    return Reply.text(text).with_usage(prompt_tokens=40, completion_tokens=100)


def _server(mock: MockLLM, tmp_path: Path, port: int | None = None, **extra: str) -> ServerProcess:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"mock": {"input": 0, "output": 300}}))
    env = durable_env(
        mock,
        f"sqlite:///{tmp_path / 'agentkeep.db'}",
        tmp_path,
        AGENTKEEP_PRICES_FILE=str(prices),
        AGENTKEEP_BUDGET_MAX_TOKENS="120",
        **extra,
    )
    return ServerProcess(TASK_AGENT, tmp_path, env=env, port=port)


def _research(server: ServerProcess) -> str:
    response = server.client.post("/v1/tasks/research", json={"input": {"topic": "durability"}})
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def test_a_tasks_run_reports_the_usage_and_cost_of_its_agent_calls(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Four priced agent calls (plan, two steps, summary): the run sums their tokens and costs $0.12."""
    mock_llm.enqueue(_priced("alpha\nbeta"), _priced("A"), _priced("B"), _priced("A and B"))
    with _server(mock_llm, tmp_path) as server:
        run = wait_finished(server, _research(server))
        assert run["status"] == "succeeded", run
        assert run["usage"] == {"requests": 4, "input_tokens": 160, "output_tokens": 400, "tool_calls": 0}
        assert run["cost_usd"] == pytest.approx(4 * USD_PER_REQUEST)
        spent = server.client.get("/v1/usage").json()["today"]["spent_usd"]
        assert spent == pytest.approx(4 * USD_PER_REQUEST)  # the same calls are in the ledger
        metrics = server.client.get("/metrics").text
        assert 'agentkeep_runs_total{agent="task:research",status="succeeded"} 1.0' in metrics


def test_after_a_crash_the_resumed_task_still_reports_its_finished_steps_usage(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """SIGKILL while the 1st execute step waits on the model: on resume the plan step is replayed
    from its checkpoint (its call counted from the checkpoint, not sent again), the cut request is
    sent again, and the run reports the four calls that were answered: $0.12, not more."""
    port = free_port()
    stalled = _priced("never delivered").with_latency(60)
    mock_llm.enqueue(_priced("alpha\nbeta"), stalled, _priced("A"), _priced("B"), _priced("A and B"))
    with _server(mock_llm, tmp_path, port) as first:
        run_id = _research(first)
        wait_for(lambda: len(mock_llm.requests) == 2, 30, "the 1st execute step's model request")
        first.proc.kill()
        first.proc.wait()
    with _server(mock_llm, tmp_path, port) as second:
        run = wait_finished(second, run_id)
        assert run["status"] == "succeeded" and run["output"] == "A and B", run
        assert run["usage"] == {"requests": 4, "input_tokens": 160, "output_tokens": 400, "tool_calls": 0}
        assert run["cost_usd"] == pytest.approx(4 * USD_PER_REQUEST)
    prompts = [r["messages"][-1]["content"] for r in mock_llm.requests]
    assert prompts == ["plan: durability", "do: alpha", "do: alpha", "do: beta", "summarize: A | B"]


def test_a_task_whose_agent_calls_exceed_the_run_budget_fails_with_budget_exceeded(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """A $0.05 run cap covers the plan ($0.03) but not a second request's $0.036 reserve: the
    first step's call is refused, not retried, and the task fails having spent only the plan."""
    mock_llm.enqueue(_priced("alpha\nbeta"), _priced("A"), _priced("B"), _priced("A and B"))
    with _server(mock_llm, tmp_path, AGENTKEEP_BUDGET_RUN_USD="0.05") as server:
        run = wait_finished(server, _research(server))
        assert run["status"] == "failed", run
        assert run["error"]["type"] == "budget_exceeded", run
        assert run["usage"]["requests"] == 1 and run["cost_usd"] == pytest.approx(USD_PER_REQUEST)
        assert len(mock_llm.requests) == 1
    assert lines(tmp_path / "side.txt") == ["plan", "execute alpha"]  # refused once, not retried


def test_a_task_is_refused_once_the_users_daily_budget_is_spent(mock_llm: MockLLM, tmp_path: Path) -> None:
    """A $0.10 daily cap: the first task spends $0.09 and is stopped at its summary; the next task
    is refused before any request, with budget_exceeded."""
    mock_llm.enqueue(*[_priced(text) for text in ("alpha\nbeta", "A", "B", "A and B")])
    with _server(mock_llm, tmp_path, AGENTKEEP_BUDGET_USER_DAILY_USD="0.1") as server:
        first = wait_finished(server, _research(server))
        assert first["status"] == "failed" and first["error"]["type"] == "budget_exceeded", first
        assert first["cost_usd"] == pytest.approx(3 * USD_PER_REQUEST)
        sent = len(mock_llm.requests)
        second = wait_finished(server, _research(server))
        assert second["status"] == "failed" and second["error"]["type"] == "budget_exceeded", second
        assert len(mock_llm.requests) == sent == 3
