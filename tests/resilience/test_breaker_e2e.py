"""A provider outage seen through a real `agentkeep serve`: the breaker opens, fails fast, recovers."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import ServerProcess
from tests.support.services import REDIS_URL, require


def _env(mock: MockLLM, tmp_path: Path, **extra: str) -> dict[str, str]:
    breaker = {
        "AGENTKEEP_BREAKER_FAILURES": "3",
        "AGENTKEEP_RATE_LIMIT": "1000/minute",
        "AGENTKEEP_READ_RATE_LIMIT": "1000/minute",
    }
    return server_env(mock, f"sqlite:///{tmp_path / 'agentkeep.db'}", **{**breaker, **extra})


def _circuit_state(server: ServerProcess, model: str) -> float | None:
    text = server.client.get("/metrics").text
    found = re.search(rf'^agentkeep_circuit_state\{{model="{re.escape(model)}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def _poll(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.05)


def test_an_outage_opens_the_breaker_and_runs_fail_fast_until_a_trial_succeeds(tmp_path: Path) -> None:
    """503s from the mock: three attempts open the breaker; then runs fail `circuit_open` (503 with
    Retry-After) without a request reaching the mock; after the reset one trial goes through, its
    success closes the breaker, and agentkeep_circuit_state follows 2 → 0."""
    with MockLLM(default=Reply.error(503, "provider down")) as mock:
        env = _env(mock, tmp_path, AGENTKEEP_BREAKER_RESET_S="1")
        with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
            first = server.post_run(message="hi")
            assert first.json()["error"]["type"] == "model_error"  # the third failure was the last attempt
            assert mock.request_count == 3
            assert _circuit_state(server, "mock") == 2

            refused = server.post_run(message="hi")
            assert refused.status_code == 503
            assert refused.json()["error"]["type"] == "circuit_open"
            assert refused.headers["Retry-After"] == "1"
            streamed = server.client.post("/v1/runs", json={"message": "hi", "stream": True})
            assert streamed.status_code == 503 and streamed.json()["error"]["type"] == "circuit_open"
            assert mock.request_count == 3  # nothing reached the provider

            mock.set_default(Reply.text("recovered"))

            def a_run_succeeds() -> bool:
                return server.post_run(message="hi").status_code == 200

            _poll(a_run_succeeds)
            assert mock.request_count == 4  # exactly one trial reached the provider
            assert _circuit_state(server, "mock") == 0
            assert server.post_run(message="hi").status_code == 200


def test_a_failed_trial_opens_the_breaker_again(tmp_path: Path) -> None:
    """Half-open and the trial fails: open again, and the next runs are refused without a request."""
    with MockLLM(default=Reply.error(502, "still down")) as mock:
        env = _env(mock, tmp_path, AGENTKEEP_BREAKER_RESET_S="1")
        with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
            server.post_run(message="hi")
            assert mock.request_count == 3

            def the_trial_was_sent() -> bool:
                server.post_run(message="hi")
                return mock.request_count > 3

            _poll(the_trial_was_sent)
            assert mock.request_count == 4  # the trial, alone
            refused = server.post_run(message="hi")
            assert refused.json()["error"]["type"] == "circuit_open"
            assert mock.request_count == 4


def test_two_servers_on_one_redis_share_the_breaker(tmp_path: Path) -> None:
    """Server A sees the outage and opens the breaker; server B, which never saw a failure, refuses
    its next run at once without sending anything: the fleet opens together."""
    require(REDIS_URL, 6379, "Redis")
    model = f"mock-{secrets.token_hex(4)}"  # a breaker key no other test shares
    with MockLLM(default=Reply.error(503, "provider down")) as mock:
        env = _env(
            mock,
            tmp_path,
            AGENTKEEP_REDIS_URL=REDIS_URL,
            AGENTKEEP_MODEL=f"openai-chat:{model}",
            AGENTKEEP_BREAKER_RESET_S="60",
        )
        with ServerProcess(MOCK_AGENT, tmp_path, env=env) as a, ServerProcess(MOCK_AGENT, tmp_path, env=env) as b:
            a.post_run(message="hi")
            assert mock.request_count == 3
            refused = b.post_run(message="hi")
            assert refused.status_code == 503
            assert refused.json()["error"]["type"] == "circuit_open"
            assert 50 <= int(refused.headers["Retry-After"]) <= 60
            assert mock.request_count == 3
            assert _circuit_state(b, model) == 2
