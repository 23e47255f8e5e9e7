"""The worker loop's rhythm: capped exponential backoff while its step fails, and the drain."""

from __future__ import annotations

import asyncio

import pytest

from agentkeep.worker import WorkerLoop
from tests.resilience.conftest import eventually


async def test_a_failing_step_backs_off_exponentially_up_to_the_cap_and_recovers() -> None:
    """Seven failures wait 0.5, 1, 2, 4, 8, 8, 8 s; a success resets the count; the loop never dies."""
    waits: list[float] = []
    outcomes = [RuntimeError("db down")] * 7 + [True, RuntimeError("again")]
    loop: WorkerLoop

    async def step() -> bool:
        outcome = outcomes.pop(0)
        if not outcomes:
            loop.begin_drain()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def pause(seconds: float) -> None:
        waits.append(seconds)

    loop = WorkerLoop(step, backoff_base_s=0.5, backoff_cap_s=8.0, pause=pause)
    await loop.run()
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 0.5]
    assert loop.failures == 1 and loop.backoff() == 0.5


async def test_an_idle_step_waits_idle_s_and_busy_steps_do_not_wait() -> None:
    """Work found → the next step at once; nothing found → wait `idle_s`."""
    waits: list[float] = []
    found = [True, True, False, True]

    async def step() -> bool:
        if len(found) == 1:
            loop.begin_drain()
        return found.pop(0)

    async def pause(seconds: float) -> None:
        waits.append(seconds)

    loop = WorkerLoop(step, idle_s=2.0, pause=pause)
    await loop.run()
    assert waits == [2.0]


async def test_drain_lets_the_step_in_flight_finish() -> None:
    """begin_drain stops new steps and wakes an idle pause; drain waits for the running step."""
    started, release, finished = asyncio.Event(), asyncio.Event(), []

    async def step() -> bool:
        started.set()
        await release.wait()
        finished.append(True)
        return True

    loop = WorkerLoop(step)
    task = loop.start()
    await started.wait()
    drain = asyncio.create_task(loop.drain(timeout=10))
    await asyncio.sleep(0)
    assert not drain.done()
    release.set()
    await drain
    assert finished == [True] and task.done() and not task.cancelled()


async def test_drain_cancels_a_step_still_running_at_the_timeout() -> None:
    """A step that outlives the drain timeout is cancelled, so shutdown is never held hostage."""
    cancelled: list[bool] = []
    started = asyncio.Event()

    async def step() -> bool:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return True

    loop = WorkerLoop(step)
    task = loop.start()
    await started.wait()
    await loop.drain(timeout=0.05)
    assert cancelled == [True] and task.done()


async def test_a_drain_during_an_idle_pause_ends_the_loop_at_once() -> None:
    """The default pause listens for the drain: an idle worker stops without sleeping out `idle_s`."""
    calls = 0

    async def step() -> bool:
        nonlocal calls
        calls += 1
        return False

    loop = WorkerLoop(step, idle_s=3600)
    task = loop.start()

    async def idle() -> bool:
        return calls == 1

    await eventually(idle)
    await loop.drain(timeout=5)
    assert task.done() and calls == 1


async def test_a_drained_loop_started_again_takes_work_again() -> None:
    """A Lambda worker container starts and drains its one engine's upkeep once per invocation:
    the second start runs steps again instead of finding the loop still draining."""
    calls = 0

    async def step() -> bool:
        nonlocal calls
        calls += 1
        return False

    loop = WorkerLoop(step, idle_s=3600)
    for invocation in (1, 2):
        task = loop.start()

        async def stepped(expected: int = invocation) -> bool:
            return calls == expected

        await eventually(stepped)
        await loop.drain(timeout=5)
        assert task.done()
    assert calls == 2


@pytest.mark.parametrize(("failures", "expected"), [(0, 0.0), (1, 0.5), (3, 2.0), (20, 30.0)])
def test_backoff_is_capped(failures: int, expected: float) -> None:
    """The default backoff: 0.5 s doubling, never above 30 s."""
    loop = WorkerLoop(lambda: asyncio.sleep(0, result=True))
    loop.failures = failures
    assert loop.backoff() == expected
