"""Staying up when providers fail, clients burst and processes restart.

    breaker.py        CircuitBreaker over a BreakerBackend (memory here)    per model
    breaker_redis.py  RedisBreakerBackend: one breaker state for a fleet
    retry.py          which failures are transient; backoff with full jitter
    model.py          BreakerModel / ModelGuard: a model behind its breaker
    hook.py           Resilience: the Hook applying breakers and retries to every run
    ratelimit.py      RateLimit: ASGI middleware, moving window per API key or address
    shutdown.py       GracefulServer: drain on SIGTERM/SIGINT, then stop; exit 0 (imported
                      from its module: it loads uvicorn, which a Lambda container never needs)

A low layer: it knows hooks, config and errors, never the runtime or the server, which wire it
(see `agentkeep.server.guards` and `agentkeep.cli`). Backpressure (the concurrency cap) lives in
the runtime, which owns the count of active runs.
"""

from agentkeep.resilience.breaker import (
    BreakerBackend,
    CircuitBreaker,
    CircuitState,
    MemoryBreakerBackend,
    ModelCircuitOpen,
    Permit,
)
from agentkeep.resilience.hook import Resilience, open_breaker
from agentkeep.resilience.model import BreakerModel, ModelGuard
from agentkeep.resilience.ratelimit import RateLimit, RateLimiter, caller_key
from agentkeep.resilience.retry import RetryPolicy, exponential_backoff, full_jitter, is_transient

__all__ = [
    "BreakerBackend",
    "BreakerModel",
    "CircuitBreaker",
    "CircuitState",
    "MemoryBreakerBackend",
    "ModelCircuitOpen",
    "ModelGuard",
    "Permit",
    "RateLimit",
    "RateLimiter",
    "Resilience",
    "RetryPolicy",
    "caller_key",
    "exponential_backoff",
    "full_jitter",
    "is_transient",
    "open_breaker",
]
