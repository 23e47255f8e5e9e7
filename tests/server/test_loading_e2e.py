"""What `agentkeep serve` makes of a TARGET: the names agents are served under, and an agent whose model
check was deferred. Real server processes, the mock model server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM
from tests.server.conftest import server_env
from tests.server.test_agent_app_e2e import BANK, bank_env
from tests.support.server import AGENTS_DIR, ServerProcess

DEFERRED = str(AGENTS_DIR / "deferred_agent.py")


def test_a_deferred_model_check_agent_runs_on_agentkeep_model(mock_llm: MockLLM, tmp_path: Path) -> None:
    """`Agent("anthropic:…", defer_model_check=True)` with no Anthropic key: with AGENTKEEP_MODEL set
    (and a budget, which prices the model first) its runs succeed on that model."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"mock": {"input": 1, "output": 1}}))
    env = server_env(
        mock_llm,
        f"sqlite:///{tmp_path / 'agentkeep.db'}",
        AGENTKEEP_MODEL="openai-chat:mock",
        AGENTKEEP_PRICES_FILE=str(prices),
        AGENTKEEP_BUDGET_USER_DAILY_USD="5",
    )
    with ServerProcess(DEFERRED, tmp_path, env=env) as server:
        for stream in (False, True):
            response = server.post_run(message="hello", stream=stream)
            assert response.status_code == 200 and "succeeded" in response.text, response.text
    assert mock_llm.requests_by_model == {"mock": 2}


@pytest.mark.parametrize(
    ("target", "name"),
    [
        (DEFERRED, "deferred_agent"),  # a file's single nameless agent: the file's stem
        (f"{DEFERRED}:support", "support"),  # named by the TARGET's attribute
        (f"{BANK}:bare", "bare"),
        (f"{BANK}:app", "bank"),  # AgentApp(name=)
    ],
)
def test_an_agent_is_listed_under_the_name_its_target_gives(
    mock_llm: MockLLM, tmp_path: Path, target: str, name: str
) -> None:
    """GET /v1/agents (what the console lists) names the agent as the TARGET does, never after the
    loader's internal module name."""
    env = bank_env(mock_llm, tmp_path, AGENTKEEP_MODEL="openai-chat:mock")
    with ServerProcess(target, tmp_path, env=env) as server:
        agents = server.client.get("/v1/agents").json()["agents"]
    assert [(a["name"], a["model"], a["default"]) for a in agents] == [(name, "mock", True)]
