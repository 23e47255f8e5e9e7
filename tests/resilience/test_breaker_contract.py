"""The breaker state machine, one contract for every backend (memory and Redis)."""

from __future__ import annotations

import asyncio

import pytest

from agentkeep.observability import metrics
from agentkeep.resilience import BreakerBackend, CircuitBreaker, CircuitState, MemoryBreakerBackend, Permit
from agentkeep.resilience.breaker import MAX_MODELS
from tests.resilience.conftest import FAILURES, RESET_S, eventually
from tests.support.services import REDIS_URL, require


async def _open(backend: BreakerBackend, key: str) -> None:
    for _ in range(FAILURES):
        await backend.record_failure(key)
    assert await backend.state(key) is CircuitState.OPEN


async def _wait_reset(backend: BreakerBackend, key: str) -> None:
    """Until the reset time has passed (peek takes no trial, so the trial is still there to take)."""

    async def past_reset() -> bool:
        return (await backend.peek(key)).allowed

    await eventually(past_reset)


async def test_a_breaker_opens_after_the_configured_consecutive_failures(
    backend: BreakerBackend, model_key: str
) -> None:
    """N-1 failures leave it closed and letting requests through; the N-th opens it and refuses."""
    for _ in range(FAILURES - 1):
        assert await backend.record_failure(model_key) is CircuitState.CLOSED
    assert (await backend.acquire(model_key)).allowed
    assert await backend.record_failure(model_key) is CircuitState.OPEN
    permit = await backend.acquire(model_key)
    assert not permit.allowed
    assert permit.state is CircuitState.OPEN
    assert 0 < permit.retry_after <= RESET_S


async def test_a_success_resets_the_count_of_consecutive_failures(backend: BreakerBackend, model_key: str) -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    for _ in range(FAILURES - 1):
        await backend.record_failure(model_key)
    assert await backend.record_success(model_key) is CircuitState.CLOSED
    for _ in range(FAILURES - 1):
        await backend.record_failure(model_key)
    assert await backend.state(model_key) is CircuitState.CLOSED


async def test_after_the_reset_exactly_one_trial_goes_through(backend: BreakerBackend, model_key: str) -> None:
    """Past the reset time, of many simultaneous requests exactly one is let through, as half-open."""
    await _open(backend, model_key)
    await _wait_reset(backend, model_key)
    permits = await asyncio.gather(*(backend.acquire(model_key) for _ in range(20)))
    allowed = [p for p in permits if p.allowed]
    assert len(allowed) == 1
    assert allowed[0].state is CircuitState.HALF_OPEN
    assert await backend.state(model_key) is CircuitState.HALF_OPEN


async def test_the_trial_succeeding_closes_the_breaker(backend: BreakerBackend, model_key: str) -> None:
    """half-open → closed on the trial's success; requests flow again."""
    await _open(backend, model_key)
    await _wait_reset(backend, model_key)
    assert (await backend.acquire(model_key)).allowed
    assert await backend.record_success(model_key) is CircuitState.CLOSED
    assert all([(await backend.acquire(model_key)).allowed for _ in range(3)])


async def test_the_trial_failing_opens_the_breaker_again(backend: BreakerBackend, model_key: str) -> None:
    """half-open → open on the trial's failure, with a fresh reset time before the next trial."""
    await _open(backend, model_key)
    await _wait_reset(backend, model_key)
    assert (await backend.acquire(model_key)).allowed
    assert await backend.record_failure(model_key) is CircuitState.OPEN
    permit = await backend.acquire(model_key)
    assert not permit.allowed and permit.retry_after > RESET_S / 2


async def test_a_success_while_open_does_not_close_it(backend: BreakerBackend, model_key: str) -> None:
    """Only the trial decides: a straggler that started before the breaker opened cannot close it."""
    await _open(backend, model_key)
    assert await backend.record_success(model_key) is CircuitState.OPEN
    assert not (await backend.acquire(model_key)).allowed


async def test_peek_never_takes_the_trial(backend: BreakerBackend, model_key: str) -> None:
    """Peeking past the reset says "allowed" as often as asked; the one trial is still there to acquire."""
    await _open(backend, model_key)
    await _wait_reset(backend, model_key)
    assert all([(await backend.peek(model_key)).allowed for _ in range(3)])
    assert (await backend.acquire(model_key)).allowed
    assert not (await backend.acquire(model_key)).allowed
    assert not (await backend.peek(model_key)).allowed


async def test_a_trial_that_never_reports_frees_its_slot_after_the_reset(
    backend: BreakerBackend, model_key: str
) -> None:
    """A trial whose process died would hold half-open for ever; after another reset a new trial goes."""
    await _open(backend, model_key)
    await _wait_reset(backend, model_key)
    assert (await backend.acquire(model_key)).allowed
    assert not (await backend.acquire(model_key)).allowed

    async def new_trial() -> bool:
        return (await backend.acquire(model_key)).allowed

    await eventually(new_trial)


async def test_breakers_are_independent_per_model(backend: BreakerBackend, model_key: str) -> None:
    """Opening one model's breaker leaves another's closed."""
    await _open(backend, model_key)
    other = model_key + "-other"
    assert (await backend.acquire(other)).allowed
    assert await backend.state(other) is CircuitState.CLOSED


async def test_two_processes_on_one_redis_share_a_breaker(model_key: str) -> None:
    """Failures seen through one client open the breaker for every client of the same Redis."""
    require(REDIS_URL, 6379, "Redis")
    from agentkeep.resilience.breaker_redis import RedisBreakerBackend

    first = RedisBreakerBackend(REDIS_URL, FAILURES, RESET_S)
    second = RedisBreakerBackend(REDIS_URL, FAILURES, RESET_S)
    try:
        for _ in range(FAILURES):
            await first.record_failure(model_key)
        assert not (await second.acquire(model_key)).allowed
        await _wait_reset(second, model_key)
        assert (await second.acquire(model_key)).allowed
        assert not (await first.acquire(model_key)).allowed  # the one trial was taken by `second`
    finally:
        await first.close()
        await second.close()


class _Broken(MemoryBreakerBackend):
    async def acquire(self, key: str) -> object:  # type: ignore[override]
        raise ConnectionError("redis is down")

    async def record_failure(self, key: str) -> CircuitState:
        raise ConnectionError("redis is down")


async def test_a_failing_backend_fails_open_and_reports_no_state(model_key: str) -> None:
    """The breaker store being down must not stop requests: `check` allows, recording is skipped."""
    seen: list[tuple[str, CircuitState]] = []
    breaker = CircuitBreaker(_Broken(FAILURES, RESET_S), on_state=lambda k, s: seen.append((k, s)))
    assert (await breaker.check(model_key)).allowed
    await breaker.failure(model_key)
    assert seen == []
    assert breaker.models() == []


async def test_the_state_listener_sees_every_transition(model_key: str) -> None:
    """`on_state` (the circuit_state gauge) hears closed, open, half-open and closed again."""
    seen: list[CircuitState] = []
    breaker = CircuitBreaker(MemoryBreakerBackend(FAILURES, RESET_S), on_state=lambda _, s: seen.append(s))
    for _ in range(FAILURES):
        await breaker.failure(model_key)
    assert not (await breaker.check(model_key)).allowed

    async def trial() -> bool:
        return (await breaker.check(model_key)).allowed

    await eventually(trial)
    await breaker.success(model_key)
    assert seen[FAILURES - 1] is CircuitState.OPEN
    assert CircuitState.HALF_OPEN in seen
    assert seen[-1] is CircuitState.CLOSED


@pytest.mark.parametrize("state", list(CircuitState))
def test_gauge_values_are_the_contract_ones(state: CircuitState) -> None:
    """agentkeep_circuit_state: 0 closed, 1 half-open, 2 open."""
    assert int(state) == {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}[state.name]


class _Counting(MemoryBreakerBackend):
    """Counts the trips to the backend, as each would be a network round trip to Redis."""

    trips = 0

    async def acquire(self, key: str) -> Permit:
        self.trips += 1
        return await super().acquire(key)

    async def peek(self, key: str) -> Permit:
        self.trips += 1
        return await super().peek(key)


async def test_an_open_breaker_refuses_locally_until_its_reset_time(model_key: str) -> None:
    """Once the backend said "open for R s", refusals need no trip to it until R has passed (it cannot
    close sooner); past R the backend is asked again, and hands out the trial."""
    backend = _Counting(FAILURES, RESET_S)
    breaker = CircuitBreaker(backend)
    for _ in range(FAILURES):
        await breaker.failure(model_key)
    first = await breaker.check(model_key)
    assert not first.allowed and backend.trips == 1
    for _ in range(50):
        permit = await breaker.peek(model_key)
        assert not permit.allowed and 0 < permit.retry_after <= first.retry_after
        assert not (await breaker.check(model_key)).allowed
    assert backend.trips == 1

    async def trial() -> bool:
        return (await breaker.check(model_key)).allowed

    await eventually(trial)
    assert backend.trips == 2  # one trip after the reset, and it took the trial


async def test_the_breaker_lists_each_model_it_has_met(backend: BreakerBackend, model_key: str) -> None:
    """`/v1/stats` asks the breaker, not the gauge: a model appears once a request (or an admission
    check) has seen its state, whichever backend holds it, and the list is sorted."""
    breaker = CircuitBreaker(backend)
    assert breaker.models() == []
    await breaker.check(f"{model_key}-b")
    await breaker.failure(f"{model_key}-a")
    await breaker.peek(f"{model_key}-c")
    await breaker.check(f"{model_key}-b")
    assert breaker.models() == [f"{model_key}-a", f"{model_key}-b", f"{model_key}-c"]


async def test_the_list_of_models_is_bounded_like_the_metric_labels(model_key: str) -> None:
    """Past `MAX_MODELS` names (the metrics' label cap) the breaker still guards a new model but no
    longer lists it, so a bug inventing model names cannot grow it without end."""
    assert MAX_MODELS == metrics.MAX_LABEL_VALUES
    breaker = CircuitBreaker(MemoryBreakerBackend(1, RESET_S))
    names = [f"{model_key}-{i:03}" for i in range(MAX_MODELS + 5)]
    for name in names:
        await breaker.check(name)
    assert breaker.models() == names[:MAX_MODELS]
    await breaker.failure(names[-1])
    assert not (await breaker.check(names[-1])).allowed
    assert names[-1] not in breaker.models()
