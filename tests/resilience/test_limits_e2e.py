"""Shedding load with a real `agentkeep serve`: the rate limit, the concurrency cap, provider 429s."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.resilience.conftest import eventually
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import ServerProcess


def _env(mock: MockLLM, tmp_path: Path, **extra: str) -> dict[str, str]:
    return server_env(mock, f"sqlite:///{tmp_path / 'agentkeep.db'}", **extra)


def test_a_burst_of_runs_over_the_rate_limit_gets_429_with_the_headers(tmp_path: Path) -> None:
    """AGENTKEEP_RATE_LIMIT=3/minute: every run's answer carries RateLimit-*; the 4th run is 429
    `rate_limited` with Retry-After, never reaching the model; reads keep their own, higher limit;
    /health, /ready and /metrics are never limited; the refusal is counted."""
    with MockLLM() as mock:
        env = _env(mock, tmp_path, AGENTKEEP_RATE_LIMIT="3/minute")
        with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
            answers = [server.post_run(message=f"run {i}") for i in range(3)]
            assert [a.status_code for a in answers] == [200, 200, 200]
            assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
            assert all(a.headers["RateLimit-Limit"] == "3" for a in answers)
            limited = server.post_run(message="one too many")
            assert limited.status_code == 429
            assert limited.json()["error"]["type"] == "rate_limited"
            retry_after = int(limited.headers["Retry-After"])
            assert 1 <= retry_after <= 60
            assert limited.headers["RateLimit-Remaining"] == "0"
            assert 0 <= int(limited.headers["RateLimit-Reset"]) <= 60
            assert mock.request_count == 3
            poll = server.client.get(f"/v1/runs/{answers[0].json()['run_id']}")
            assert poll.status_code == 200 and poll.headers["RateLimit-Limit"] == "600"
            for _ in range(10):
                assert server.client.get("/health").status_code == 200
                assert server.client.get("/ready").status_code == 200
            metrics = server.client.get("/metrics")
            assert metrics.status_code == 200
            assert "agentkeep_rate_limited_total 1.0" in metrics.text


def test_polling_counts_against_the_read_limit_and_leaves_the_runs_alone(tmp_path: Path) -> None:
    """AGENTKEEP_READ_RATE_LIMIT=3/minute: the 4th GET is 429 while a new run still starts, because
    runs count against AGENTKEEP_RATE_LIMIT alone."""
    with MockLLM() as mock:
        env = _env(mock, tmp_path, AGENTKEEP_READ_RATE_LIMIT="3/minute", AGENTKEEP_RATE_LIMIT="3/minute")
        with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
            polls = [server.client.get("/v1/runs/run_nope") for _ in range(3)]
            assert [p.status_code for p in polls] == [404, 404, 404]
            assert [p.headers["RateLimit-Remaining"] for p in polls] == ["2", "1", "0"]
            assert server.client.get("/v1/sessions/s1").status_code == 429
            run = server.post_run(message="still allowed")
            assert run.status_code == 200, run.text
            assert run.headers["RateLimit-Remaining"] == "2"


def test_api_keys_are_limited_separately(tmp_path: Path) -> None:
    """The limit is per caller: a second bearer token has its own budget."""
    with MockLLM() as mock:
        env = _env(mock, tmp_path, AGENTKEEP_READ_RATE_LIMIT="2/minute")
        with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
            first = {"Authorization": "Bearer key-one"}
            statuses = [server.client.get("/v1/runs/x", headers=first).status_code for _ in range(3)]
            assert statuses[-1] == 429
            second = server.client.get("/v1/runs/x", headers={"Authorization": "Bearer key-two"})
            assert second.status_code != 429 and second.headers["RateLimit-Remaining"] == "1"


async def test_over_the_concurrency_cap_new_runs_get_503_overloaded(tmp_path: Path) -> None:
    """At AGENTKEEP_MAX_CONCURRENT_RUNS the next run is refused at once (503 `overloaded`, Retry-After)
    without reaching the model, /health says degraded while saturated, and healthy once it is not."""
    with MockLLM(default=Reply.text("slow").with_latency(2)) as mock:
        env = _env(
            mock,
            tmp_path,
            AGENTKEEP_MAX_CONCURRENT_RUNS="2",
            AGENTKEEP_RATE_LIMIT="1000/minute",
            AGENTKEEP_READ_RATE_LIMIT="1000/minute",
        )
        with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                busy = [asyncio.create_task(client.post("/v1/runs", json={"message": "hi"})) for _ in range(2)]

                async def both_running() -> bool:
                    return mock.request_count >= 2

                await eventually(both_running)
                refused = await client.post("/v1/runs", json={"message": "one more"})
                assert refused.status_code == 503
                assert refused.json()["error"]["type"] == "overloaded"
                assert int(refused.headers["Retry-After"]) >= 1
                health = await client.get("/health")
                assert health.status_code == 503
                assert health.json()["status"] == "degraded"
                assert health.json()["checks"]["capacity"] == "saturated"
                assert [r.status_code for r in await asyncio.gather(*busy)] == [200, 200]
                assert mock.request_count == 2
                assert (await client.get("/health")).json()["status"] == "healthy"


async def test_a_burst_never_admits_more_runs_than_the_cap(tmp_path: Path) -> None:
    """20 runs at once against a cap of 5: exactly 5 run, 15 are refused `overloaded`; none queue."""
    with MockLLM(default=Reply.text("ok").with_latency(1.5)) as mock:
        env = _env(
            mock,
            tmp_path,
            AGENTKEEP_MAX_CONCURRENT_RUNS="5",
            AGENTKEEP_RATE_LIMIT="1000/minute",
            AGENTKEEP_READ_RATE_LIMIT="1000/minute",
        )
        with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
            limits = httpx.Limits(max_connections=30)
            async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
                answers = await asyncio.gather(*(client.post("/v1/runs", json={"message": "hi"}) for _ in range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 5 + [503] * 15
    assert all(a.json()["error"]["type"] == "overloaded" for a in answers if a.status_code == 503)
    assert mock.request_count == 5


def test_a_provider_429_with_retry_after_is_honoured(tmp_path: Path) -> None:
    """The mock answers 429 Retry-After: 1, then the answer: one run, two model requests, at least 1 s
    apart, and the attempt the retry replaced is counted as `retried`."""
    replies = [Reply.error(429, "slow down", retry_after=1), Reply.text("patience")]
    with MockLLM(replies) as mock, ServerProcess(MOCK_AGENT, tmp_path, env=_env(mock, tmp_path)) as server:
        response = server.post_run(message="hi")
        assert response.status_code == 200, response.text
        assert response.json()["output"] == "patience"
        assert response.json()["duration_ms"] >= 1000
        assert mock.request_count == 2
        metrics = server.client.get("/metrics").text
        assert 'agentkeep_model_requests_total{model="mock",outcome="retried"} 1.0' in metrics
        assert 'agentkeep_model_requests_total{model="mock",outcome="ok"} 1.0' in metrics
