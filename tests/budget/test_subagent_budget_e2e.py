"""A user's daily cap holds for a run whose tools call other agents: their requests are reserved and
settled in the ledger like the parent's. A real `agentkeep serve` of tests/agents/delegation_agent.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM
from tests.budget.support import ledger_total, query
from tests.server.test_nested_agents_e2e import REPLY_COST, TRIAGE, consultation, delegation_env
from tests.support.server import ServerProcess

# The parent's own 3 requests cost $0.09 and fit; with its sub-agents' 2 the run would cost $0.15.
DAILY_CAP = 0.10


def test_a_daily_cap_stops_the_sub_agent_request_that_would_cross_it(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Each request reserves its worst case ($0.036): the reviewer's (the run's 4th, after $0.09 was
    spent) cannot fit under $0.10, so it is refused before it is sent: the run fails 402
    budget_exceeded, the mock saw 3 requests, and settled spend ($0.09) stays under the cap."""
    mock_llm.enqueue(*consultation())
    db = f"sqlite:///{tmp_path / 'agentkeep.db'}"
    env = delegation_env(
        mock_llm, tmp_path, AGENTKEEP_BUDGET_USER_DAILY_USD=str(DAILY_CAP), AGENTKEEP_BUDGET_MAX_TOKENS="120"
    )
    with ServerProcess(TRIAGE, tmp_path, env=env) as server:
        response = server.post_run(message="Patient with chest pain")
        assert response.status_code == 402, response.text
        error = response.json()["error"]
        assert error["type"] == "budget_exceeded" and "user's daily budget" in error["message"]
        usage = server.client.get("/v1/usage").json()
        run = server.client.get("/v1/runs").json()["runs"][0]
    assert mock_llm.requests_by_model == {"mock": 2, "mock-specialist": 1}
    spent = ledger_total(db)
    assert spent == pytest.approx(3 * REPLY_COST) and spent <= DAILY_CAP
    assert usage["today"]["spent_usd"] == pytest.approx(spent)
    assert (run["status"], run["error"]["type"]) == ("failed", "budget_exceeded")
    assert run["cost_usd"] == pytest.approx(spent) and run["usage"]["requests"] == 3
    assert [model for (model,) in query(db, "SELECT model FROM agentkeep_ledger ORDER BY id")] == [
        "mock",
        "mock-specialist",
        "mock",
    ]
