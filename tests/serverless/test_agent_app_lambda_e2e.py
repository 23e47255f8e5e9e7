"""An AgentApp on Lambda: its lifespan entered once per container, its deps factory called for every
run, a failing lifespan refused in one line. A container as a subprocess, PostgreSQL, the mock model."""

from __future__ import annotations

import json
from pathlib import Path

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.server.test_agent_app_e2e import BANK, bank_env, log_lines
from tests.serverless.conftest import function_env
from tests.serverless.support import LambdaProcess, body_of, http_event
from tests.support.cli import make_key


def _env(mock: MockLLM, postgres_url: str, tmp_path: Path, target: str) -> dict[str, str]:
    bank = bank_env(mock, tmp_path)
    return function_env(mock, postgres_url, target=target, BANK_DB=bank["BANK_DB"], AGENT_LOG=bank["AGENT_LOG"])


def test_a_container_enters_the_lifespan_once_and_builds_deps_per_run(
    mock_llm: MockLLM, postgres_url: str, tmp_path: Path
) -> None:
    """Two invocations of one container: one lifespan, two factory calls, each with its run's metadata."""
    key = make_key(postgres_url, "alice")
    mock_llm.reset()
    mock_llm.set_default(Reply.call_then_answer("customer_balance", {}, "Here is your balance."))
    with LambdaProcess(_env(mock_llm, postgres_url, tmp_path, f"{BANK}:app"), tmp_path) as function:
        run_ids = []
        for customer in (7, 123):
            body = {"message": "Balance?", "metadata": {"customer_id": customer}}
            response = function.invoke(http_event("http_v2", "POST", "/v1/runs", body, key=key))
            assert response["statusCode"] == 200, response
            run_ids.append(body_of(response)["run_id"])
    deps = log_lines(tmp_path, "deps")
    assert [(d[0], d[2], d[4]) for d in deps] == [(run_ids[0], "alice", "7"), (run_ids[1], "alice", "123")]
    assert [kind for kind, _ in log_lines(tmp_path, "lifespan")].count("enter") == 1
    sent = json.dumps([r["messages"] for r in mock_llm.requests])
    assert "$9.50" in sent and "$123.45" in sent


def test_a_failing_lifespan_fails_the_invocation_in_one_line(
    mock_llm: MockLLM, postgres_url: str, tmp_path: Path
) -> None:
    """The container does not start: the invocation's error is one line naming the lifespan."""
    env = _env(mock_llm, postgres_url, tmp_path, f"{BANK}:broken_lifespan")
    with LambdaProcess(env, tmp_path) as function:
        answer = function.invoke_raw(http_event("function_url", "POST", "/v1/runs", {"message": "hi"}))
    assert answer["error"] == "StartupFailed: the lifespan of agent 'bank' failed at startup (ConnectionError)"
