"""Circuit breakers, one per model, over a pluggable state backend.

    closed     requests flow; `failures` consecutive provider failures open the breaker
    open       requests are refused at once, without touching the network, for `reset_s`
    half_open  exactly one trial request goes through; its success closes the breaker, its
               failure opens it again for another `reset_s`

A trial that never reports (its process died mid-request) frees the trial slot after `reset_s`,
so a breaker cannot stay half-open for ever. While open, a success reported by a request that
started before the breaker opened does not close it: only the trial decides.

State lives in a `BreakerBackend`, so the same `CircuitBreaker` runs on one process
(`MemoryBreakerBackend`) or a fleet (`RedisBreakerBackend` in `breaker_redis.py`, which opens
every process's breaker together). A backend that fails (Redis down) fails open: the breaker lets
requests through and logs, because an outage of the breaker store must not become an outage of
the service.
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from pydantic_ai.exceptions import ModelAPIError

__all__ = [
    "MAX_MODELS",
    "BreakerBackend",
    "CircuitBreaker",
    "CircuitState",
    "MemoryBreakerBackend",
    "ModelCircuitOpen",
    "Permit",
    "StateListener",
]

log = structlog.get_logger("agentkeep.resilience")

_FAILURE_LOG_INTERVAL_S = 30.0
# Models a breaker remembers meeting, for `/v1/stats`: the bound the metrics put on a label's values
# (`observability.metrics.MAX_LABEL_VALUES`, which this lower layer does not import), so a bug inventing
# model names cannot grow the list without end.
MAX_MODELS = 200


class CircuitState(enum.IntEnum):
    """A breaker's state; the values are those of the `agentkeep_circuit_state` gauge."""

    CLOSED = 0  # requests flow
    HALF_OPEN = 1  # one trial request is (or may be) in flight
    OPEN = 2  # requests are refused until the reset time has passed


@dataclass(frozen=True)
class Permit:
    """The answer to "may I send a request to this model now?"."""

    allowed: bool
    state: CircuitState
    retry_after: float = 0.0  # when refused: seconds until a trial may be let through


class ModelCircuitOpen(ModelAPIError):
    """A request refused by an open breaker before it was sent.

    A `ModelAPIError`, so a `FallbackModel` (whose default `fallback_on` is `ModelAPIError`) moves on
    to its next model; without one, the resilience hook reports it as the run's `circuit_open`.
    """

    def __init__(self, model_name: str, retry_after: float) -> None:
        super().__init__(
            model_name,
            f"the circuit breaker for model {model_name!r} is open after repeated provider failures",
            retry_after=retry_after,
        )


class BreakerBackend(ABC):
    """Where breaker state lives. Each method is atomic for its key, across every process sharing it."""

    def __init__(self, failures: int, reset_s: float) -> None:
        self.failures = failures
        self.reset_s = reset_s

    @abstractmethod
    async def acquire(self, key: str) -> Permit:
        """Ask to send one request; past the reset time of an open breaker this takes the one trial."""

    @abstractmethod
    async def peek(self, key: str) -> Permit:
        """What `acquire` would answer now, without taking the trial."""

    @abstractmethod
    async def record_success(self, key: str) -> CircuitState:
        """A request succeeded: a closed breaker forgets its failures, a half-open one closes."""

    @abstractmethod
    async def record_failure(self, key: str) -> CircuitState:
        """A request failed: a closed breaker counts it (opening at the threshold), a half-open one opens."""

    @abstractmethod
    async def state(self, key: str) -> CircuitState:
        """The state as stored, without taking a trial."""

    async def close(self) -> None:
        """Release connections; the default has none."""


@dataclass
class _Entry:
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial_at: float = 0.0


class MemoryBreakerBackend(BreakerBackend):
    """Breaker state in this process. Atomic because no method awaits while it reads and writes."""

    def __init__(self, failures: int, reset_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(failures, reset_s)
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    async def acquire(self, key: str) -> Permit:
        permit = self._permit(key)
        if permit.allowed and permit.state is not CircuitState.CLOSED:
            entry = self._entries[key]
            entry.state = CircuitState.HALF_OPEN
            entry.trial_at = self._clock()
        return permit

    async def peek(self, key: str) -> Permit:
        return self._permit(key)

    def _permit(self, key: str) -> Permit:
        entry = self._entries.get(key)
        if entry is None or entry.state is CircuitState.CLOSED:
            return Permit(True, CircuitState.CLOSED)
        elapsed = self._clock() - (entry.opened_at if entry.state is CircuitState.OPEN else entry.trial_at)
        if elapsed < self.reset_s:
            return Permit(False, entry.state, self.reset_s - elapsed)
        return Permit(True, CircuitState.HALF_OPEN)

    async def record_success(self, key: str) -> CircuitState:
        entry = self._entries.get(key)
        if entry is None:
            return CircuitState.CLOSED
        if entry.state is not CircuitState.OPEN:
            entry.state = CircuitState.CLOSED
            entry.failures = 0
        return entry.state

    async def record_failure(self, key: str) -> CircuitState:
        entry = self._entries.setdefault(key, _Entry())
        if entry.state is CircuitState.OPEN:
            return entry.state
        entry.failures += 1
        if entry.state is CircuitState.HALF_OPEN or entry.failures >= self.failures:
            entry.state = CircuitState.OPEN
            entry.opened_at = self._clock()
            entry.failures = 0
        return entry.state

    async def state(self, key: str) -> CircuitState:
        entry = self._entries.get(key)
        return CircuitState.CLOSED if entry is None else entry.state


StateListener = Callable[[str, CircuitState], None]


class CircuitBreaker:
    """The breakers of every model, over one backend; tells `on_state` each state it observes.

    An open breaker cannot close before its reset time (only the trial after it can), so once the
    backend has refused with `retry_after`, this process refuses on its own until then: a refusal
    costs microseconds even when the state lives in Redis.
    """

    def __init__(self, backend: BreakerBackend, *, on_state: StateListener | None = None) -> None:
        self.backend = backend
        self._on_state = on_state
        self._last_backend_error = 0.0
        self._open_until: dict[str, float] = {}  # key → monotonic time it is known to stay open until
        self._models: set[str] = set()

    @property
    def reset_s(self) -> float:
        return self.backend.reset_s

    async def check(self, key: str) -> Permit:
        """May a request go to model `key` now? Fails open when the backend is unreachable."""
        return await self._ask(key, "acquire", self.backend.acquire)

    async def peek(self, key: str) -> Permit:
        """Would a request to `key` be let through now? Takes no trial; fails open like `check`."""
        return await self._ask(key, "peek", self.backend.peek)

    async def _ask(self, key: str, what: str, ask: Callable[[str], Awaitable[Permit]]) -> Permit:
        if (known := self._known_open(key)) is not None:
            return known
        try:
            permit = await ask(key)
        except Exception as exc:
            self._backend_failed(what, exc)
            return Permit(True, CircuitState.CLOSED)
        self._remember(key, permit)
        return permit

    async def success(self, key: str) -> None:
        await self._record(key, self.backend.record_success)

    async def failure(self, key: str) -> None:
        await self._record(key, self.backend.record_failure)

    async def state(self, key: str) -> CircuitState:
        return await self.backend.state(key)

    async def close(self) -> None:
        await self.backend.close()

    def models(self) -> list[str]:
        """The models this breaker has seen a state of (the first `MAX_MODELS`), sorted."""
        return sorted(self._models)

    async def _record(self, key: str, record: Callable[[str], Awaitable[CircuitState]]) -> None:
        try:
            state = await record(key)
        except Exception as exc:
            self._backend_failed("record", exc)
            return
        self._observe(key, state)

    def _known_open(self, key: str) -> Permit | None:
        until = self._open_until.get(key)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del self._open_until[key]
            return None
        return Permit(False, CircuitState.OPEN, left)

    def _remember(self, key: str, permit: Permit) -> None:
        if not permit.allowed and permit.state is CircuitState.OPEN:
            self._open_until[key] = time.monotonic() + permit.retry_after
        self._observe(key, permit.state)

    def _observe(self, key: str, state: CircuitState) -> None:
        if key not in self._models and len(self._models) < MAX_MODELS:
            self._models.add(key)
        if self._on_state is not None:
            self._on_state(key, state)

    def _backend_failed(self, operation: str, exc: Exception) -> None:
        # One line per interval: a down Redis would otherwise log on every model request.
        now = time.monotonic()
        if now - self._last_backend_error >= _FAILURE_LOG_INTERVAL_S:
            self._last_backend_error = now
            log.warning("breaker_backend_failed", operation=operation, exc_type=type(exc).__name__, error=str(exc))
