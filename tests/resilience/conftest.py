"""Fixtures for the resilience tests: breaker backends (memory and real Redis) and polling."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from agentkeep.resilience import BreakerBackend, MemoryBreakerBackend
from tests.support.services import REDIS_URL, require

FAILURES = 3
RESET_S = 0.3


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll `check` until it is true; fail when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@pytest.fixture
def model_key() -> str:
    """A breaker name no other test (or earlier run against the same Redis) uses."""
    return f"test-model-{secrets.token_hex(6)}"


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[BreakerBackend]:
    """Each breaker backend in turn: the contract suite runs against both."""
    if request.param == "memory":
        yield MemoryBreakerBackend(FAILURES, RESET_S)
        return
    require(REDIS_URL, 6379, "Redis")
    from agentkeep.resilience.breaker_redis import RedisBreakerBackend

    redis_backend = RedisBreakerBackend(REDIS_URL, FAILURES, RESET_S)
    yield redis_backend
    await redis_backend.close()
