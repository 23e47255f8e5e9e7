"""The rate limit wired to this HTTP app: the middleware's limiter, and its 429s counted in
`agentkeep_rate_limited_total` (the resilience layer itself knows no metrics). The breakers and
retries are the runtime's, wired in `agentkeep.services`.
"""

from __future__ import annotations

from agentkeep.config import Settings
from agentkeep.observability import metrics
from agentkeep.resilience import RateLimiter

__all__ = ["rate_limited", "rate_limiter"]


def rate_limited() -> None:
    """Count one 429 (the RateLimit middleware's `on_limited`)."""
    metrics.RATE_LIMITED.inc()


def rate_limiter(settings: Settings) -> RateLimiter:
    """AGENTKEEP_RATE_LIMIT, counted in Redis when AGENTKEEP_REDIS_URL is set, else in memory."""
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
    return RateLimiter(settings.rate_limit, redis_url=redis_url)
