"""The in-memory moving window: it reopens as hits age out, and forgets callers who went quiet."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentkeep.resilience.ratelimit import RateLimiter

DEADLINE_S = 5.0


async def test_a_full_window_reopens_as_its_oldest_hit_ages_out() -> None:
    limiter = RateLimiter("2/second")
    assert [(await limiter.hit("addr:a"))[0] for _ in range(2)] == [True, True]
    allowed, stats = await limiter.hit("addr:a")
    assert not allowed
    assert stats.remaining == 0
    assert time.time() < stats.reset_time <= time.time() + 1.0
    assert (await limiter.hit("addr:b"))[0], "another caller has a window of its own"
    deadline = time.monotonic() + DEADLINE_S
    while not (await limiter.hit("addr:a"))[0]:
        assert time.monotonic() < deadline, "the window never reopened"
        await asyncio.sleep(0.05)


async def test_windows_of_callers_gone_quiet_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agentkeep.resilience.ratelimit._SWEEP_HITS", 3)
    limiter = RateLimiter("5/second")
    for caller in ("addr:a", "addr:b"):
        await limiter.hit(caller)
    memory = limiter._memory  # what it keeps is the point of this test
    assert memory is not None
    deadline = time.monotonic() + DEADLINE_S
    while True:
        await limiter.hit("addr:c")  # every third hit sweeps
        if set(memory._hits) == {"addr:c"}:
            break
        assert time.monotonic() < deadline, f"quiet callers are still kept: {sorted(memory._hits)}"
        await asyncio.sleep(0.05)
