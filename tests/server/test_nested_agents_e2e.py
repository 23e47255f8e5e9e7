"""Agents that a run's tools call are inside the run: a real `agentkeep serve` of the delegation agent
(tests/agents/delegation_agent.py), the mock model server counting every request by model name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.budget.support import query
from tests.durable.support import wait_finished
from tests.server.conftest import server_env
from tests.support.server import AGENTS_DIR, ServerProcess

TRIAGE = f"{AGENTS_DIR / 'delegation_agent.py'}:triage"
USD_PER_M = 300  # output tokens; each reply bills 100 of them: $0.03
REPLY_COST = USD_PER_M * 100 / 1_000_000
MODELS = ("mock", "mock-specialist", "mock-reviewer")


def priced(reply: Reply) -> Reply:
    return reply.with_usage(prompt_tokens=40, completion_tokens=100)


def consultation() -> list[Reply]:
    """One run of the triage agent: specialist (shared usage), then a second opinion (its own)."""
    return [
        priced(Reply.tool_call("consult_specialist", {"question": "chest pain at rest"})),
        priced(Reply.text("Likely angina.")),  # the specialist
        priced(Reply.tool_call("second_opinion", {"question": "angina?"})),
        priced(Reply.text("Agreed.")),  # the reviewer
        priced(Reply.text("Diagnosis: angina, confirmed.")),
    ]


def delegation_env(mock: MockLLM, tmp_path: Path, **extra: str) -> dict[str, str]:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({model: {"input": 0, "output": USD_PER_M} for model in MODELS}))
    return server_env(
        mock,
        f"sqlite:///{tmp_path / 'agentkeep.db'}",
        AGENTKEEP_PRICES_FILE=str(prices),
        AGENTKEEP_RATE_LIMIT="100000/minute",
        **extra,
    )


def _check_counted(run: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    """Five requests, three of them the parent's: all in the run's usage, cost and steps."""
    assert run["usage"] == {"requests": 5, "input_tokens": 200, "output_tokens": 500, "tool_calls": 2}, run
    assert abs(run["cost_usd"] - 5 * REPLY_COST) < 1e-9
    models = [step["name"] for step in steps if step["kind"] == "model_request"]
    assert models == ["mock", "mock-specialist", "mock", "mock-reviewer", "mock"]


def test_sub_agent_requests_count_in_the_run_on_every_path(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Sync, streamed, background and a second turn: with and without `usage=ctx.usage`, each
    sub-agent request is in the run's usage and cost, its steps and the ledger; the session keeps
    only the parent's own conversation."""
    with ServerProcess(TRIAGE, tmp_path, env=delegation_env(mock_llm, tmp_path)) as server:
        runs = []
        for body in ({"session_id": "p1"}, {"session_id": "p1", "stream": True}, {"background": True}):
            mock_llm.enqueue(*consultation())
            response = server.post_run(message="Patient with chest pain", **body)
            assert response.status_code in (200, 202), response.text
            if body.get("stream"):
                assert "event: run.completed" in response.text
                run_id = json.loads(response.text.split("event: run.completed\ndata: ")[1].split("\n")[0])["run_id"]
            else:
                run_id = response.json()["run_id"]
            run = wait_finished(server, run_id)
            assert run["status"] == "succeeded", run
            _check_counted(run, server.client.get(f"/v1/runs/{run_id}/steps").json()["steps"])
            runs.append(run)
        session = server.client.get("/v1/sessions/p1").json()["messages"]
    # Two turns of the parent: its prompt, tool calls, tool results and answers; no sub-agent's messages.
    assert [m["role"] for m in session] == ["user", "assistant", "tool", "assistant", "tool", "assistant"] * 2
    assert "Likely angina." in json.dumps(session) and "Consultation:" not in json.dumps(session)
    assert mock_llm.requests_by_model == {"mock": 9, "mock-specialist": 3, "mock-reviewer": 3}
    ledger = query(f"sqlite:///{tmp_path / 'agentkeep.db'}", "SELECT run_id, model FROM agentkeep_ledger")
    assert sorted(model for _, model in ledger) == sorted(
        ["mock"] * 9 + ["mock-specialist"] * 3 + ["mock-reviewer"] * 3
    )
    assert {run_id for run_id, _ in ledger} == {run["run_id"] for run in runs}


def test_agentkeep_model_overrides_every_sub_agents_model(mock_llm: MockLLM, tmp_path: Path) -> None:
    """AGENTKEEP_MODEL=openai-chat:override: the parent, both sub-agents and the reviewer's own
    sub-agent (built without a model, two levels down) all run on it, and all count in the run."""
    mock_llm.enqueue(
        Reply.tool_call("consult_specialist", {"question": "chest pain"}),
        Reply.text("Likely angina."),
        Reply.tool_call("second_opinion", {"question": "angina?"}),
        Reply.tool_call("look_up", {"topic": "angina"}),  # the reviewer asks the librarian
        Reply.text("See the guideline."),  # the librarian, two levels down
        Reply.text("Agreed, per the guideline."),
        Reply.text("Diagnosis: angina."),
    )
    env = delegation_env(mock_llm, tmp_path, AGENTKEEP_MODEL="openai-chat:override")
    with ServerProcess(TRIAGE, tmp_path, env=env) as server:
        response = server.post_run(message="Patient with chest pain")
        assert response.status_code == 200, response.text
        run = response.json()
        steps = server.client.get(f"/v1/runs/{run['run_id']}/steps").json()["steps"]
    assert run["output"] == "Diagnosis: angina."
    assert mock_llm.requests_by_model == {"override": 7}
    assert run["usage"]["requests"] == 7 and run["usage"]["tool_calls"] == 3
    assert [s["name"] for s in steps if s["kind"] == "model_request"] == ["override"] * 7
    assert sorted(run["tools_used"]) == ["consult_specialist", "look_up", "second_opinion"]
