"""Budgets as a user meets them: real `agentkeep serve` processes, real databases, the mock model server."""

from __future__ import annotations

import asyncio
import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.budget.support import (
    RUN_COST,
    WebhookReceiver,
    budget_env,
    ledger_total,
    priced_reply,
    query,
    runs_total,
    start_servers,
    wait_for,
)
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import ServerProcess

RUNS = 20
DAILY_CAP = 0.10


async def _fire(urls: list[str], count: int) -> list[httpx.Response]:
    """`count` concurrent sync runs, spread over `urls`, each on its own session."""
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(
            *(client.post(f"{urls[i % len(urls)]}/v1/runs", json={"message": f"run {i}"}) for i in range(count))
        )


def _assert_cap_held(responses: list[httpx.Response], mock: MockLLM, database_url: str) -> None:
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 402}, [r.text for r in responses if r.status_code not in (200, 402)]
    refused = [r.json()["error"] for r in responses if r.status_code == 402]
    assert refused, "some runs must be refused with 402"
    assert {e["type"] for e in refused} == {"budget_exceeded"}
    succeeded = [r.json() for r in responses if r.status_code == 200]
    assert succeeded, "some runs must fit under the cap"
    assert all(r["cost_usd"] == pytest.approx(RUN_COST) for r in succeeded)
    # A refused run made no model request: each succeeded run made exactly one.
    assert mock.request_count == len(succeeded)
    spent = ledger_total(database_url)
    assert spent <= DAILY_CAP + 1e-12
    assert spent == pytest.approx(len(succeeded) * RUN_COST)
    assert spent == pytest.approx(runs_total(database_url), abs=1e-9)


def test_concurrent_runs_never_settle_past_the_daily_cap(mock_llm: MockLLM, tmp_path: Path, sqlite_url: str) -> None:
    """20 concurrent runs of ~$0.03 against $0.10 a day: spend stays ≤ $0.10, the rest get 402, and
    the ledger's total equals the sum of the runs' cost_usd."""
    mock_llm.set_default(priced_reply(latency=0.05))
    env = budget_env(mock_llm, sqlite_url, tmp_path, AGENTKEEP_BUDGET_USER_DAILY_USD=str(DAILY_CAP))
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
        responses = asyncio.run(_fire([server.url], RUNS))
        _assert_cap_held(responses, mock_llm, sqlite_url)
        usage = server.client.get("/v1/usage").json()
    assert usage["today"]["spent_usd"] == pytest.approx(ledger_total(sqlite_url))
    assert usage["budgets"]["user_daily"]["remaining_usd"] == pytest.approx(DAILY_CAP - ledger_total(sqlite_url))


def test_two_processes_sharing_postgres_hold_the_cap_together(
    mock_llm: MockLLM, tmp_path: Path, fresh_postgres_url: str
) -> None:
    """The same 20 runs split across two server processes on one PostgreSQL database: the cap holds."""
    mock_llm.set_default(priced_reply(latency=0.05))
    env = budget_env(mock_llm, fresh_postgres_url, tmp_path, AGENTKEEP_BUDGET_USER_DAILY_USD=str(DAILY_CAP))
    with ExitStack() as stack:
        servers = start_servers(stack, 2, env, tmp_path)
        responses = asyncio.run(_fire([s.url for s in servers], RUNS))
    _assert_cap_held(responses, mock_llm, fresh_postgres_url)


def test_an_unpriced_model_under_a_budget_is_refused_before_any_request(
    mock_llm: MockLLM, tmp_path: Path, sqlite_url: str
) -> None:
    """No price for the model and a budget set → 402 price_unknown, and the mock never saw a request."""
    env = server_env(mock_llm, sqlite_url, AGENTKEEP_BUDGET_USER_DAILY_USD="5")
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
        response = server.post_run(message="what does this cost?")
        assert response.status_code == 402, response.text
        assert response.json()["error"]["type"] == "price_unknown"
        assert "AGENTKEEP_PRICES_FILE" in response.json()["error"]["message"]
    assert mock_llm.request_count == 0
    [(status, error_type)] = query(sqlite_url, "SELECT status, error_type FROM agentkeep_runs")
    assert (status, error_type) == ("failed", "price_unknown")


def test_an_unpriced_model_without_a_budget_runs_with_a_null_cost(
    mock_llm: MockLLM, tmp_path: Path, sqlite_url: str
) -> None:
    """Without a budget an unpriced model runs: its tokens are in the ledger, its cost is null, not 0."""
    with ServerProcess(MOCK_AGENT, tmp_path, env=server_env(mock_llm, sqlite_url)) as server:
        result = server.post_run(message="hello").json()
    assert result["cost_usd"] is None
    [(input_tokens, output_tokens, cost)] = query(
        sqlite_url, "SELECT input_tokens, output_tokens, cost_nano FROM agentkeep_ledger"
    )
    assert (input_tokens, output_tokens) == (result["usage"]["input_tokens"], result["usage"]["output_tokens"])
    assert cost is None


def test_thresholds_crossed_by_concurrent_runs_in_two_processes_post_once_each(
    mock_llm: MockLLM, tmp_path: Path, fresh_postgres_url: str
) -> None:
    """20 concurrent runs in two processes cross $0.05, $0.10 and $0.20 of the user's day: the webhook
    receives exactly one POST per threshold."""
    mock_llm.set_default(priced_reply(latency=0.02))
    with WebhookReceiver() as receiver, ExitStack() as stack:
        env = budget_env(
            mock_llm,
            fresh_postgres_url,
            tmp_path,
            AGENTKEEP_BUDGET_ALERTS_USD="0.05,0.1,0.2",
            AGENTKEEP_ALERT_WEBHOOK_URL=receiver.url,
        )
        servers = start_servers(stack, 2, env, tmp_path)
        responses = asyncio.run(_fire([s.url for s in servers], RUNS))
        assert [r.status_code for r in responses] == [200] * RUNS
        # Every crossing is claimed in the run's own transaction, so all alert rows exist by now.
        wait_for(
            lambda: (
                query(fresh_postgres_url, "SELECT COUNT(*) FROM agentkeep_budget_alerts WHERE delivered_at IS NULL")
                == [(0,)]
            ),
            what="every alert delivered",
        )
        bodies = receiver.received()
        logs = "".join(s.output() for s in servers)
    assert sorted(b["threshold"] for b in bodies) == [0.05, 0.1, 0.2]
    assert {b["scope"] for b in bodies} == {"user"}
    assert all(b["spent"] >= b["threshold"] and b["id"] == "anonymous" for b in bodies)
    assert logs.count('"budget_alert"') == 3


def test_a_reservation_of_a_killed_process_expires_and_frees_the_budget(
    mock_llm: MockLLM, tmp_path: Path, sqlite_url: str
) -> None:
    """A process SIGKILLed mid-request holds $0.036 of a $0.05 cap; another process is refused until
    the reservation expires (TTL 1 s), then runs."""
    env = budget_env(
        mock_llm,
        sqlite_url,
        tmp_path,
        AGENTKEEP_BUDGET_USER_DAILY_USD="0.05",
        AGENTKEEP_BUDGET_RESERVATION_TTL_S="1",
    )
    with ExitStack() as stack:
        doomed, other = start_servers(stack, 2, env, tmp_path)
        mock_llm.set_default(priced_reply(latency=120))
        outcome: list[Any] = []
        thread = threading.Thread(target=lambda: outcome.append(_post_quietly(doomed.url)), daemon=True)
        thread.start()
        wait_for(lambda: mock_llm.request_count == 1, what="the doomed run's request in flight")
        mock_llm.set_default(priced_reply())
        # Held, and kept alive beyond its TTL by the live process: the other process cannot fit a request.
        assert other.client.get("/v1/usage").json()["today"]["held_usd"] == pytest.approx(0.036)
        refused = other.post_run(message="no room yet")
        assert refused.status_code == 402 and refused.json()["error"]["type"] == "budget_exceeded"
        doomed.signal(signal.SIGKILL)
        doomed.wait_exit()

        def runs_again() -> bool:
            return other.post_run(message="room again?").status_code == 200

        wait_for(runs_again, timeout=15, what="the budget to be usable again")
        usage = other.client.get("/v1/usage").json()
        thread.join(timeout=10)
    assert usage["today"]["held_usd"] == 0
    assert usage["today"]["spent_usd"] == pytest.approx(RUN_COST)
    assert outcome == ["transport error"]


def _post_quietly(url: str) -> str:
    try:
        httpx.post(f"{url}/v1/runs", json={"message": "doomed"}, timeout=60)
    except httpx.TransportError:
        return "transport error"
    return "answered"


def test_a_run_stopped_midway_keeps_its_spend_and_leaves_the_session(
    mock_llm: MockLLM, tmp_path: Path, sqlite_url: str
) -> None:
    """A run whose second request would cross the run cap fails with budget_exceeded before sending
    it; its record keeps the first request's messages and cost; the session history is unchanged."""
    mock_llm.enqueue(
        Reply.tool_call("add", {"a": 1, "b": 2}).with_usage(prompt_tokens=40, completion_tokens=100),
        priced_reply(),
    )
    env = budget_env(mock_llm, sqlite_url, tmp_path, AGENTKEEP_BUDGET_RUN_USD="0.05")
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
        response = server.post_run(message="add 1 and 2", session_id="midway")
        assert response.status_code == 402, response.text
        assert response.json()["error"]["type"] == "budget_exceeded"
        [(run_id,)] = query(sqlite_url, "SELECT run_id FROM agentkeep_runs")
        run = server.client.get(f"/v1/runs/{run_id}").json()
        session = server.client.get("/v1/sessions/midway").json()
    assert mock_llm.request_count == 1
    assert run["status"] == "failed" and run["error"]["type"] == "budget_exceeded"
    assert run["cost_usd"] == pytest.approx(RUN_COST)
    assert run["usage"]["requests"] == 1
    assert session["messages"] == []
    [(messages,)] = query(sqlite_url, "SELECT messages FROM agentkeep_runs")
    assert b"add" in bytes(messages)
    assert ledger_total(sqlite_url) == pytest.approx(RUN_COST)


def test_a_streamed_run_is_reserved_and_priced_like_a_sync_one(
    mock_llm: MockLLM, tmp_path: Path, sqlite_url: str
) -> None:
    """SSE under a cap: run.completed carries the cost, the ledger has it, and nothing stays held."""
    mock_llm.set_default(priced_reply())
    env = budget_env(mock_llm, sqlite_url, tmp_path, AGENTKEEP_BUDGET_USER_DAILY_USD="1")
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
        with server.client.stream("POST", "/v1/runs", json={"message": "stream it", "stream": True}) as response:
            body = "".join(response.iter_text())
        usage = server.client.get("/v1/usage").json()
    completed = [block for block in body.split("\n\n") if block.startswith("event: run.completed")]
    assert len(completed) == 1
    assert f'"cost_usd": {RUN_COST}' in completed[0]
    sent = mock_llm.requests[-1]  # the ceiling the budget set, whichever name the client gives it
    assert 120 in (sent.get("max_tokens"), sent.get("max_completion_tokens"))
    assert usage["today"]["spent_usd"] == pytest.approx(RUN_COST) and usage["today"]["held_usd"] == 0
