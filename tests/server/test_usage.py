"""`GET /v1/usage`, in process: spend today and this month, each budget's cap and what remains."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from agentkeep.config import Settings
from agentkeep.server import create_app
from agentkeep.server.usage import caller_is_admin


def _answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    # 100 output tokens at $1,000 per million: $0.10 a run (plus $0.00001 of input).
    return ModelResponse(parts=[TextPart("ok")], usage=RequestUsage(input_tokens=10, output_tokens=100))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"priced": {"input": 1, "output": 1000}}))
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'agentkeep.db'}",  # type: ignore[arg-type]
        auth="off",
        prices_file=prices,
        budget_user_daily_usd=1.0,
        budget_session_usd=0.5,
        budget_run_usd=0.25,
        budget_max_tokens=150,
    )
    agent: Agent[None, str] = Agent(FunctionModel(_answer, model_name="priced"), name="a")
    with TestClient(create_app(settings, {"a": agent})) as test_client:
        yield test_client


def test_usage_reports_spend_and_what_each_budget_leaves(client: TestClient) -> None:
    """After one $0.10001 run: today and this month show it, and the daily budget has $0.89999 left."""
    assert client.post("/v1/runs", json={"message": "hi", "session_id": "s1"}).status_code == 200
    usage = client.get("/v1/usage").json()
    assert usage["user_id"] == "anonymous"
    assert usage["today"]["spent_usd"] == pytest.approx(0.10001)
    assert usage["month"]["spent_usd"] == pytest.approx(0.10001)
    assert usage["today"]["held_usd"] == 0
    daily = usage["budgets"]["user_daily"]
    assert daily["cap_usd"] == 1.0 and daily["remaining_usd"] == pytest.approx(0.89999)
    assert usage["budgets"]["run"] == {"cap_usd": 0.25}
    assert usage["budgets"]["session"] == {"cap_usd": 0.5}
    session = client.get("/v1/usage", params={"session_id": "s1"}).json()["budgets"]["session"]
    assert session["session_id"] == "s1" and session["remaining_usd"] == pytest.approx(0.39999)


def test_another_users_usage_needs_an_admin_key(client: TestClient) -> None:
    """`user_id` of someone else → 401 for a normal caller; an admin sees that user's (empty) usage."""
    refused = client.get("/v1/usage", params={"user_id": "bob"})
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "unauthorized"
    client.app.dependency_overrides[caller_is_admin] = lambda: True  # type: ignore[attr-defined]
    usage = client.get("/v1/usage", params={"user_id": "bob"}).json()
    assert usage["user_id"] == "bob" and usage["today"]["spent_usd"] == 0


def test_usage_only_reads_so_it_answers_while_another_process_holds_the_write_lock(
    client: TestClient, tmp_path: Path
) -> None:
    """GET /v1/usage writes nothing (dead processes' reservations are the reclaimer's job), so it
    answers at once while another connection, as another process would, holds SQLite's write lock."""
    assert client.post("/v1/runs", json={"message": "hi", "session_id": "s1"}).status_code == 200
    other = sqlite3.connect(tmp_path / "agentkeep.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        usage = client.get("/v1/usage")
        assert usage.status_code == 200, usage.text
        assert time.monotonic() - started < 5.0, "the usage read waited for the write lock"
        assert usage.json()["today"]["spent_usd"] == pytest.approx(0.10001)
    finally:
        other.close()
