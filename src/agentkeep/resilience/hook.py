"""The `Resilience` hook: circuit breakers and retries around every model request of every run.

Before the run (`admit`, and again in `before_run` for a run queued earlier): when every model
the run would use has an open breaker, it is refused at once with `circuit_open`, before it is
recorded and without starting the agent, so a refusal takes well under a millisecond of the
server's time. The runtime names the run's model in `RunState.model`.

Per attempt at a model request (Pydantic AI makes another one each time a hook raises
`RetryModelRequest`):

    wrap_model()               the serving model goes behind its breaker (`model.ModelGuard`):
                               an open breaker refuses in microseconds with nothing sent, and a
                               FallbackModel moves on to its next model
    on_model_request_error()   every model refused by its breaker → the run fails `circuit_open`
                               (HTTP 503 with Retry-After for a synchronous run); a transient
                               failure with attempts and deadline left → wait (backoff, full
                               jitter, Retry-After) and raise `RetryModelRequest`; anything else
                               → the run fails with it

A retry of a request served by a FallbackModel runs the whole chain again, so a fallback chain
moves to its next model at once and only waits when every model failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from pydantic_ai import exceptions as pai
from pydantic_ai.models import Model
from pydantic_ai.models.fallback import FallbackModel

from agentkeep.config import Settings
from agentkeep.errors import CircuitOpen
from agentkeep.hooks import Hook, ModelCall, RunState
from agentkeep.resilience.breaker import (
    BreakerBackend,
    CircuitBreaker,
    MemoryBreakerBackend,
    ModelCircuitOpen,
    StateListener,
)
from agentkeep.resilience.model import ModelGuard
from agentkeep.resilience.retry import RetryPolicy, is_circuit_open, is_rate_limit, leaf_errors, retry_after

__all__ = ["Resilience", "open_breaker"]

log = structlog.get_logger("agentkeep.resilience")

RetryListener = Callable[[str], None]


def open_breaker(settings: Settings, *, on_state: StateListener | None = None) -> CircuitBreaker:
    """The breaker the settings ask for: shared through Redis when AGENTKEEP_REDIS_URL is set."""
    backend: BreakerBackend
    if settings.redis_url is not None:
        from agentkeep.resilience.breaker_redis import RedisBreakerBackend

        backend = RedisBreakerBackend(
            settings.redis_url.get_secret_value(), settings.breaker_failures, settings.breaker_reset_s
        )
    else:
        backend = MemoryBreakerBackend(settings.breaker_failures, settings.breaker_reset_s)
    return CircuitBreaker(backend, on_state=on_state)


class Resilience(Hook):
    """Breakers and retries around model requests; put it after the hooks that measure requests."""

    def __init__(
        self,
        breaker: CircuitBreaker,
        *,
        run_timeout_s: float,
        request_timeout_s: float,
        policy: RetryPolicy | None = None,
        on_retry: RetryListener | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.breaker = breaker
        self.guard = ModelGuard(breaker, timeout_s=request_timeout_s)
        self.policy = policy or RetryPolicy()
        self.run_timeout_s = run_timeout_s
        self._on_retry = on_retry
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        on_state: StateListener | None = None,
        on_retry: RetryListener | None = None,
    ) -> Resilience:
        return cls(
            open_breaker(settings, on_state=on_state),
            run_timeout_s=settings.run_timeout_s,
            request_timeout_s=settings.model_request_timeout_s,
            on_retry=on_retry,
        )

    async def close(self) -> None:
        await self.breaker.close()

    async def admit(self, run: RunState) -> None:
        await self._refuse_if_open(run)

    async def before_run(self, run: RunState) -> None:
        await self._refuse_if_open(run)

    async def _refuse_if_open(self, run: RunState) -> None:
        model = run.model
        if not isinstance(model, Model):
            return
        names = _model_names(model)
        permits = [await self.breaker.peek(name) for name in names]
        if permits and not any(p.allowed for p in permits):
            raise _circuit_open(names, min(p.retry_after for p in permits))

    def wrap_model(self, model: Model) -> Model | None:
        return self.guard.wrap(model)

    async def on_model_request_error(self, run: RunState, call: ModelCall, error: Exception) -> None:
        if is_circuit_open(error):
            names = sorted({e.model_name for e in leaf_errors(error) if isinstance(e, ModelCircuitOpen)})
            raise _circuit_open(names, retry_after(error) or self.breaker.reset_s) from None
        time_left = run.started + self.run_timeout_s - time.monotonic()
        delay = self.policy.delay(call.attempt, error, time_left=time_left)
        if delay is None:
            await self._give_up(error)
            return
        if self._on_retry is not None:
            self._on_retry(call.model_name)
        log.info(
            "model.retry",
            model=call.model_name,
            attempt=call.attempt,
            delay_s=round(delay, 3),
            exc_type=type(error).__name__,
        )
        await self._sleep(delay)
        raise pai.RetryModelRequest()

    async def _give_up(self, error: Exception) -> None:
        # A 429 that outlived its retries means the provider keeps refusing: now it counts as a failure.
        for leaf in leaf_errors(error):
            if is_rate_limit(leaf) and isinstance(leaf, pai.ModelAPIError):
                await self.breaker.failure(leaf.model_name)
        if isinstance(error, BaseExceptionGroup):
            # A FallbackModel's group: report the last model's own failure, which names what went wrong.
            reasons = [e for e in leaf_errors(error) if not isinstance(e, ModelCircuitOpen)]
            if reasons:
                raise reasons[-1] from None


def _model_names(model: Model) -> list[str]:
    """The breakers a request to `model` may go through: one per model of a FallbackModel."""
    if isinstance(model, FallbackModel):
        return [name for inner in model.models for name in _model_names(inner)]
    return [model.model_name]


def _circuit_open(names: list[str], retry_after_s: float) -> CircuitOpen:
    which = ", ".join(repr(n) for n in names)
    return CircuitOpen(
        f"model {which} is failing and its circuit breaker is open; retry after the Retry-After delay",
        retry_after=retry_after_s,
    )
