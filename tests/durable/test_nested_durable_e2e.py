"""A background run whose tools call other agents, resumed after `kill -9`: the sub-agents' requests
were checkpointed with their tool's call, so the next process neither repeats them nor forgets them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import submit, wait_finished, wait_for
from tests.server.test_nested_agents_e2e import REPLY_COST, TRIAGE, consultation, delegation_env, priced
from tests.support.server import ServerProcess, free_port


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def test_a_resumed_run_counts_its_sub_agents_requests_once(mock_llm: MockLLM, tmp_path: Path) -> None:
    """SIGKILL while the parent's last request is in flight (both tools and their sub-agents done):
    after the restart only that request is sent again; the run's usage and cost still count the
    sub-agents' requests, which the mock saw once each."""
    *done, last = consultation()
    mock_llm.enqueue(*done, last.with_latency(30))
    port = free_port()  # the same executor after the restart, which resumes its runs
    env = delegation_env(mock_llm, tmp_path)
    with ServerProcess(TRIAGE, tmp_path, env=env, port=port) as first:
        run_id = submit(first, "Patient with chest pain")
        wait_for(lambda: mock_llm.request_count == 5, 30, "the parent's last request to start")
        first.proc.kill()
        first.proc.wait()
    mock_llm.enqueue(priced(Reply.text("Diagnosis: angina, confirmed.")))
    with ServerProcess(TRIAGE, tmp_path, env=env, port=port) as second:
        run = wait_finished(second, run_id)
    assert run["status"] == "succeeded", run
    assert run["usage"] == {"requests": 5, "input_tokens": 200, "output_tokens": 500, "tool_calls": 2}
    assert run["cost_usd"] == pytest.approx(5 * REPLY_COST)
    assert mock_llm.requests_by_model == {"mock": 4, "mock-specialist": 1, "mock-reviewer": 1}
