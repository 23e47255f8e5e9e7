"""The resilience package wired to this process: breakers and retries as a hook, the rate limit as
middleware, each reporting to the contract's metrics (the resilience layer itself knows no metrics).

    agentkeep_circuit_state{model}                 every breaker state a request observes
    agentkeep_model_requests_total{model,outcome}  outcome="retried" for each attempt retried;
                                                   the Telemetry hook counts the final attempt
    agentkeep_rate_limited_total                   every 429
"""

from __future__ import annotations

from agentkeep.config import Settings
from agentkeep.observability import metrics
from agentkeep.resilience import CircuitState, RateLimiter, Resilience

__all__ = ["rate_limited", "rate_limiter", "resilience_hook"]


def _circuit_state(model: str, state: CircuitState) -> None:
    metrics.CIRCUIT_STATE.labels(metrics.bounded("model", model)).set(int(state))


def _retried(model: str) -> None:
    metrics.MODEL_REQUESTS.labels(metrics.bounded("model", model), "retried").inc()


def rate_limited() -> None:
    """Count one 429 (the RateLimit middleware's `on_limited`)."""
    metrics.RATE_LIMITED.inc()


def resilience_hook(settings: Settings) -> Resilience:
    """Breakers (shared through Redis when configured) and retries, reporting to the metrics."""
    return Resilience.from_settings(settings, on_state=_circuit_state, on_retry=_retried)


def rate_limiter(settings: Settings) -> RateLimiter:
    """AGENTKEEP_RATE_LIMIT, counted in Redis when AGENTKEEP_REDIS_URL is set, else in memory."""
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
    return RateLimiter(settings.rate_limit, redis_url=redis_url)
