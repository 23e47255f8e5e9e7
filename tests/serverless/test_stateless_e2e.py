"""Statelessness: containers (fresh interpreters) share nothing but PostgreSQL and Redis."""

from __future__ import annotations

from pathlib import Path

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.serverless.conftest import function_env
from tests.serverless.support import LambdaProcess, body_of, http_event
from tests.support.cli import make_key
from tests.support.services import REDIS_URL, fresh_postgres_database, require


def test_two_containers_continue_one_session(mock_llm: MockLLM, tmp_path: Path) -> None:
    """The first container answers turn one and is gone; a second, fresh one answers turn two with
    turn one in the model's context, and the session holds all four messages."""
    with fresh_postgres_database() as url:
        key = make_key(url, "carol")
        env = function_env(mock_llm, url)
        mock_llm.enqueue(Reply.text("nice to meet you, Ada"), Reply.text("your name is Ada"))
        run = {"session_id": "shared", "message": "my name is Ada"}
        with LambdaProcess(env, tmp_path) as first:
            response = first.invoke(http_event("function_url", "POST", "/v1/runs", run, key=key))
            assert response["statusCode"] == 200, response
        requests_before = len(mock_llm.requests)
        run = {"session_id": "shared", "message": "what is my name?"}
        with LambdaProcess(env, tmp_path) as second:
            response = second.invoke(http_event("rest_v1", "POST", "/v1/runs", run, key=key))
            assert response["statusCode"] == 200, response
            assert body_of(response)["output"] == "your name is Ada"
            history = body_of(second.invoke(http_event("http_v2", "GET", "/v1/sessions/shared", key=key)))
        sent = [m.get("content") for m in mock_llm.requests[requests_before]["messages"]]
        assert "my name is Ada" in sent and "nice to meet you, Ada" in sent
        assert [m["content"] for m in history["messages"]] == [
            "my name is Ada",
            "nice to meet you, Ada",
            "what is my name?",
            "your name is Ada",
        ]


def test_two_containers_share_one_rate_limit_through_redis(mock_llm: MockLLM, tmp_path: Path) -> None:
    """With AGENTKEEP_REDIS_URL, a limit of 3 a minute holds across containers: the 4th run, in
    whichever container, gets 429 rate_limited with Retry-After."""
    require(REDIS_URL, 6379, "Redis")
    with fresh_postgres_database() as url:
        key = make_key(url, "grace")
        env = function_env(mock_llm, url, AGENTKEEP_REDIS_URL=REDIS_URL, AGENTKEEP_RATE_LIMIT="3/minute")
        with LambdaProcess(env, tmp_path) as first, LambdaProcess(env, tmp_path) as second:
            answers = [
                container.invoke(http_event("function_url", "POST", "/v1/runs", {"message": "hi"}, key=key))
                for container in (first, second, first, second)
            ]
    assert [a["statusCode"] for a in answers] == [200, 200, 200, 429]
    assert body_of(answers[-1])["error"]["type"] == "rate_limited" and answers[-1]["headers"]["retry-after"]
