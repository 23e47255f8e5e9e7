"""The rate-limit middleware, one contract for both storages (memory and Redis)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from limits.aio.storage import MemoryStorage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from agentkeep.resilience import RateLimit, RateLimiter, caller_key
from tests.support.services import REDIS_URL, require


async def _ok(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _app(limiter: RateLimiter, limited: list[int]) -> Starlette:
    routes = [Route(path, _ok) for path in ("/v1/runs", "/v1/other", "/health", "/ready", "/metrics")]
    app = Starlette(routes=routes)
    app.add_middleware(RateLimit, limiter=limiter, on_limited=lambda: limited.append(1))
    return app


@pytest.fixture(params=["memory", "redis"])
def redis_url(request: pytest.FixtureRequest) -> str | None:
    """Each storage in turn; the Redis one needs the server (skipped, or failed under CI, without it)."""
    if request.param == "memory":
        return None
    require(REDIS_URL, 6379, "Redis")
    return REDIS_URL


@pytest.fixture
async def client_for(redis_url: str | None) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []
    limiters: dict[str, RateLimiter] = {}  # one per limit: clients of a test share its storage
    limited: list[int] = []

    def build(limit: str = "3/minute", address: str | None = None) -> httpx.AsyncClient:
        # A fresh address per client: Redis keeps counts across tests and runs.
        client_address = address or f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
        limiter = limiters.setdefault(limit, RateLimiter(limit, redis_url=redis_url))
        transport = httpx.ASGITransport(app=_app(limiter, limited), client=(client_address, 1234))
        client = httpx.AsyncClient(transport=transport, base_url="http://test")
        client.limited = limited  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()
    for limiter in limiters.values():
        await limiter.aclose()


async def test_over_the_limit_answers_429_with_retry_after_and_the_ratelimit_headers(
    client_for: Callable[..., httpx.AsyncClient],
) -> None:
    """3/minute: three answers count down RateLimit-Remaining, the fourth is 429 `rate_limited`."""
    client = client_for("3/minute")
    answers = [await client.get("/v1/runs") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["2", "1", "0"]
    assert {a.headers["ratelimit-limit"] for a in answers} == {"3"}
    refused = await client.post("/v1/other")
    assert refused.status_code == 429
    assert refused.json() == {"error": {"type": "rate_limited", "message": refused.json()["error"]["message"]}}
    assert "3 per 1 minute" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    assert 0 <= int(refused.headers["ratelimit-reset"]) <= 60
    assert client.limited == [1]  # type: ignore[attr-defined]


async def test_health_ready_and_metrics_are_never_limited(client_for: Callable[..., httpx.AsyncClient]) -> None:
    """Probes and scrapes stay outside /v1: they neither count nor get refused."""
    client = client_for("1/minute")
    for _ in range(5):
        for path in ("/health", "/ready", "/metrics"):
            answer = await client.get(path)
            assert answer.status_code == 200 and "ratelimit-limit" not in answer.headers
    assert (await client.get("/v1/runs")).status_code == 200


async def test_each_caller_has_its_own_window(client_for: Callable[..., httpx.AsyncClient]) -> None:
    """Separate client addresses, and separate API keys from one address, are limited separately."""
    first = client_for("1/minute")
    assert (await first.get("/v1/runs")).status_code == 200
    assert (await first.get("/v1/runs")).status_code == 429
    assert (await client_for("1/minute").get("/v1/runs")).status_code == 200
    key = secrets.token_hex(8)
    keyed = client_for("1/minute", address="10.0.0.1")
    assert (await keyed.get("/v1/runs", headers={"Authorization": f"Bearer {key}-a"})).status_code == 200
    assert (await keyed.get("/v1/runs", headers={"Authorization": f"Bearer {key}-b"})).status_code == 200
    assert (await keyed.get("/v1/runs", headers={"Authorization": f"Bearer {key}-a"})).status_code == 429


def test_the_caller_key_hashes_the_api_key_and_never_stores_it() -> None:
    """The bearer token is hashed; a request without one is keyed by its address."""
    keyed = caller_key({"headers": [(b"authorization", b"Bearer sk-secret")], "client": ("1.2.3.4", 1)})
    assert keyed.startswith("key:") and "sk-secret" not in keyed
    assert caller_key({"headers": [], "client": ("1.2.3.4", 1)}) == "addr:1.2.3.4"


class _DownStorage(MemoryStorage):
    async def acquire_entry(self, *args: object, **kwargs: object) -> bool:
        raise ConnectionError("redis is down")


async def test_a_failing_storage_lets_requests_through() -> None:
    """The limit protects the service, so a down storage must not refuse every request."""
    limited: list[int] = []
    transport = httpx.ASGITransport(app=_app(RateLimiter("1/minute", storage=_DownStorage()), limited))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert [(await client.get("/v1/runs")).status_code for _ in range(3)] == [200, 200, 200]
    assert limited == []


async def test_runs_and_reads_count_against_their_own_limits(redis_url: str | None) -> None:
    """With `reads`, requests `starts_run` names spend the runs' limit and every other one the
    reads' limit, even when both limits are the same string on one storage."""
    runs, reads = (
        RateLimiter("1/minute", redis_url=redis_url, name="runs"),
        RateLimiter("1/minute", redis_url=redis_url, name="reads"),
    )
    app = Starlette(routes=[Route("/v1/runs", _ok, methods=["GET", "POST"])])
    app.add_middleware(RateLimit, limiter=runs, reads=reads, starts_run=lambda method, _path: method == "POST")
    address = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    transport = httpx.ASGITransport(app=app, client=(address, 1234))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.post("/v1/runs")).status_code == 200
            assert (await client.get("/v1/runs")).status_code == 200  # its own window, still open
            assert (await client.post("/v1/runs")).status_code == 429
            assert (await client.get("/v1/runs")).status_code == 429
    finally:
        await runs.aclose()
        await reads.aclose()
