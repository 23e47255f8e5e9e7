"""`handler` end to end: AWS's example events, re-aimed at the contract's routes, through a fresh
interpreter per container, against PostgreSQL and the mock model server.

Every answer must be what `agentkeep serve` gives: the same statuses, and every error in the
contract's envelope.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.serverless.conftest import function_env
from tests.serverless.support import SOURCES, LambdaProcess, body_of, header, http_event
from tests.support.cli import make_key

pytestmark = pytest.mark.usefixtures("mock_llm")


@pytest.fixture(scope="module")
def key(postgres_url: str) -> str:
    return make_key(postgres_url, "alice")


@pytest.fixture(scope="module")
def function(mock_llm: MockLLM, postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaProcess]:
    with LambdaProcess(function_env(mock_llm, postgres_url), tmp_path_factory.mktemp("lambda")) as process:
        yield process


def _envelope(response: dict[str, Any], status: int, error_type: str) -> str:
    """Check the status and the contract's envelope; return the message."""
    assert response["statusCode"] == status, response
    body = body_of(response)
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == error_type, body
    assert "Traceback" not in body["error"]["message"]
    message: str = body["error"]["message"]
    return message


@pytest.mark.parametrize("source", SOURCES)
def test_a_run_answers_the_run_result(function: LambdaProcess, mock_llm: MockLLM, key: str, source: str) -> None:
    """POST /v1/runs from each event source: 200 and the contract's RunResult, model answer included."""
    mock_llm.enqueue(Reply.text(f"hello from {source}"))
    response = function.invoke(http_event(source, "POST", "/v1/runs", {"message": "hi"}, key=key))
    assert response["statusCode"] == 200, response
    result = body_of(response)
    assert result["status"] == "succeeded" and result["output"] == f"hello from {source}"
    assert set(result) >= {"run_id", "session_id", "tools_used", "usage", "cost_usd", "duration_ms"}
    assert header(response, "content-type") == "application/json"


@pytest.mark.parametrize("source", SOURCES)
def test_a_base64_body_runs_like_a_plain_one(function: LambdaProcess, mock_llm: MockLLM, key: str, source: str) -> None:
    mock_llm.enqueue(Reply.text("decoded"))
    event = http_event(source, "POST", "/v1/runs", {"message": "hi"}, key=key, base64_body=True)
    response = function.invoke(event)
    assert response["statusCode"] == 200, response
    assert body_of(response)["output"] == "decoded"


@pytest.mark.parametrize("source", SOURCES)
def test_a_streamed_run_is_answered_whole(function: LambdaProcess, mock_llm: MockLLM, key: str, source: str) -> None:
    """stream: true → one text/event-stream response holding every event, run.completed last."""
    mock_llm.enqueue(Reply.text("streamed answer"))
    response = function.invoke(http_event(source, "POST", "/v1/runs", {"message": "hi", "stream": True}, key=key))
    assert response["statusCode"] == 200, response
    assert (header(response, "content-type") or "").startswith("text/event-stream")
    events = [block.split("\n") for block in response["body"].strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names[0] == "run.started" and names[-1] == "run.completed" and "text.delta" in names
    completed = json.loads(events[-1][1].removeprefix("data: "))
    assert completed["status"] == "succeeded" and completed["output"] == "streamed answer"


@pytest.mark.parametrize("source", SOURCES)
def test_get_on_a_post_only_route_is_405(function: LambdaProcess, key: str, source: str) -> None:
    _envelope(function.invoke(http_event(source, "GET", "/v1/runs/run_x/cancel", key=key)), 405, "method_not_allowed")


@pytest.mark.parametrize("source", SOURCES)
def test_bad_json_is_400(function: LambdaProcess, key: str, source: str) -> None:
    response = function.invoke(http_event(source, "POST", "/v1/runs", raw_body='{"message": ', key=key))
    _envelope(response, 400, "invalid_request")


@pytest.mark.parametrize("source", SOURCES)
def test_no_key_or_a_wrong_key_is_401(function: LambdaProcess, mock_llm: MockLLM, source: str) -> None:
    before = mock_llm.request_count
    for key in (None, "ak_not_a_real_key"):
        _envelope(
            function.invoke(http_event(source, "POST", "/v1/runs", {"message": "hi"}, key=key)), 401, "unauthorized"
        )
    assert mock_llm.request_count == before


@pytest.mark.parametrize("source", SOURCES)
def test_a_session_continues_across_invocations(
    function: LambdaProcess, mock_llm: MockLLM, key: str, source: str
) -> None:
    session = f"chat-{source}"
    for word in ("one", "two"):
        mock_llm.enqueue(Reply.text(word))
        response = function.invoke(
            http_event(source, "POST", "/v1/runs", {"message": word, "session_id": session}, key=key)
        )
        assert response["statusCode"] == 200, response
    history = body_of(function.invoke(http_event(source, "GET", f"/v1/sessions/{session}", key=key)))
    assert [m["content"] for m in history["messages"]] == ["one", "one", "two", "two"]


def test_a_budget_refusal_is_402(mock_llm: MockLLM, postgres_url: str, key: str, tmp_path: Path) -> None:
    """A run that would cross the daily cap is refused before any model request, in the envelope."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"mock": {"input": 0, "output": 300}}))
    env = function_env(
        mock_llm,
        postgres_url,
        AGENTKEEP_PRICES_FILE=str(prices),
        AGENTKEEP_BUDGET_USER_DAILY_USD="0.01",
        AGENTKEEP_BUDGET_MAX_TOKENS="120",  # reserves $0.036 a request: over the cap at once
    )
    before = mock_llm.request_count
    with LambdaProcess(env, tmp_path) as function:
        for source in SOURCES:
            response = function.invoke(http_event(source, "POST", "/v1/runs", {"message": "hi"}, key=key))
            _envelope(response, 402, "budget_exceeded")
    assert mock_llm.request_count == before


def test_sqlite_on_lambda_is_refused_in_one_line(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Lambda's disk goes with the container: the function refuses to start, saying what to set."""
    env = function_env(mock_llm, f"sqlite:///{tmp_path / 'agentkeep.db'}")
    with LambdaProcess(env, tmp_path) as function:
        answer = function.invoke_raw(http_event("function_url", "POST", "/v1/runs", {"message": "hi"}))
    assert answer["error"].startswith("ConfigError: AGENTKEEP_DATABASE_URL is SQLite"), answer
    assert "postgresql://" in answer["error"] and "\n" not in answer["error"]
    assert not (tmp_path / "agentkeep.db").exists()


def test_a_scheduled_event_sent_to_the_http_handler_says_where_it_belongs(function: LambdaProcess) -> None:
    answer = function.invoke_raw({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
    assert answer["error"].startswith("BadEvent:") and "worker_handler" in answer["error"]


def test_the_worker_handler_in_an_http_container_says_it_needs_its_own_function(function: LambdaProcess) -> None:
    """A container's durable engine either only queues (handler) or executes (worker_handler): the
    wrong handler in a built container is refused in one line instead of running in the wrong mode."""
    assert function.invoke(http_event("function_url", "GET", "/health"))["statusCode"] == 200  # built for HTTP
    answer = function.invoke_raw({"source": "aws.events"}, handler="worker_handler")
    assert answer["error"] == "ConfigError: this container serves handler; give worker_handler a function of its own"
