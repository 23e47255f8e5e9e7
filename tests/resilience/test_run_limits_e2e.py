"""AGENTKEEP_MAX_TOKENS_PER_RUN and AGENTKEEP_MAX_TOOL_CALLS_PER_RUN count everything a run caused,
its sub-agents' requests and tool calls included. A real `agentkeep serve` of the delegation agent
(tests/agents/delegation_agent.py), the mock model server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.server.conftest import server_env
from tests.server.test_nested_agents_e2e import TRIAGE, consultation, priced
from tests.support.server import ServerProcess


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def _run(mock: MockLLM, tmp_path: Path, **limits: str) -> dict[str, Any]:
    env = server_env(mock, f"sqlite:///{tmp_path / 'agentkeep.db'}", **limits)
    with ServerProcess(TRIAGE, tmp_path, env=env) as server:
        response = server.post_run(message="Patient with chest pain")
        assert response.status_code == 500, response.text
        error: dict[str, Any] = response.json()["error"]
        runs = server.client.get("/v1/runs").json()["runs"]
    assert [(r["status"], r["error"]["type"]) for r in runs] == [("failed", "iteration_limit")]
    return error


def test_the_token_limit_counts_the_parents_requests(mock_llm: MockLLM, tmp_path: Path) -> None:
    """300 tokens, 140 a request (specialist's shared with the run): the run fails `iteration_limit`
    after the request that crossed the limit, naming the setting."""
    mock_llm.enqueue(*consultation())
    error = _run(mock_llm, tmp_path, AGENTKEEP_MAX_TOKENS_PER_RUN="300")
    assert error["type"] == "iteration_limit"
    assert "AGENTKEEP_MAX_TOKENS_PER_RUN" in error["message"]
    assert mock_llm.request_count == 3


def test_the_token_limit_stops_the_next_request_after_a_sub_agent_used_the_rest(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """250 tokens: the parent's first request (140) and the reviewer's (140, not shared with the
    parent's own counters) use 280, so the parent's next request is refused before it is sent."""
    mock_llm.enqueue(
        priced(Reply.tool_call("second_opinion", {"question": "angina?"})),
        priced(Reply.text("Agreed.")),
        priced(Reply.text("never sent")),
    )
    error = _run(mock_llm, tmp_path, AGENTKEEP_MAX_TOKENS_PER_RUN="250")
    assert error["message"] == "the run used 280 tokens, its limit (AGENTKEEP_MAX_TOKENS_PER_RUN) is 250"
    assert mock_llm.requests_by_model == {"mock": 1, "mock-reviewer": 1}


def test_the_tool_call_limit_counts_a_sub_agents_tool_calls(mock_llm: MockLLM, tmp_path: Path) -> None:
    """2 tool calls: the parent makes two, the reviewer's own `look_up` is the third and is refused
    before it runs (the librarian it would ask sees nothing)."""
    mock_llm.enqueue(
        Reply.tool_call("consult_specialist", {"question": "chest pain"}),
        Reply.text("Likely angina."),
        Reply.tool_call("second_opinion", {"question": "angina?"}),
        Reply.tool_call("look_up", {"topic": "angina"}),
        Reply.text("never sent"),
    )
    error = _run(mock_llm, tmp_path, AGENTKEEP_MAX_TOOL_CALLS_PER_RUN="2")
    assert error["message"] == "the run reached its limit of 2 tool calls (AGENTKEEP_MAX_TOOL_CALLS_PER_RUN)"
    assert mock_llm.requests_by_model == {"mock": 2, "mock-specialist": 1, "mock-reviewer": 1}
