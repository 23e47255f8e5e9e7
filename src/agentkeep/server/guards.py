"""The rate limits wired to this HTTP app: the middleware's two limiters, which routes count as runs,
and the 429s counted in `agentkeep_rate_limited_total` (the resilience layer itself knows no
metrics). The breakers and retries are the runtime's, wired in `agentkeep.services`.
"""

from __future__ import annotations

import re

from agentkeep.config import Settings
from agentkeep.observability import metrics
from agentkeep.resilience import RateLimiter

__all__ = ["RUN_ROUTES", "rate_limited", "rate_limiter", "read_rate_limiter", "starts_run"]

# The POST routes that start or resume a run (the contract's, protocols included): AGENTKEEP_RATE_LIMIT
# counts them; every other /v1 request (polls, reads, cancels, deletes) counts against
# AGENTKEEP_READ_RATE_LIMIT. A test walks the app's POST routes, so a new one is classified on purpose.
RUN_ROUTES = re.compile(r"/v1/(runs|runs/[^/]+/resume|tasks/[^/]+|chat/completions|ag-ui|chat)/?")


def starts_run(method: str, path: str) -> bool:
    """Whether this request starts or resumes a run (the RateLimit middleware's `starts_run`)."""
    return method == "POST" and RUN_ROUTES.fullmatch(path) is not None


def rate_limited() -> None:
    """Count one 429 (the RateLimit middleware's `on_limited`)."""
    metrics.RATE_LIMITED.inc()


def rate_limiter(settings: Settings) -> RateLimiter:
    """AGENTKEEP_RATE_LIMIT (runs), counted in Redis when AGENTKEEP_REDIS_URL is set, else in memory."""
    return RateLimiter(settings.rate_limit, redis_url=_redis_url(settings), name="runs")


def read_rate_limiter(settings: Settings) -> RateLimiter:
    """AGENTKEEP_READ_RATE_LIMIT (every other /v1 request), on the same storage as the runs' limit."""
    return RateLimiter(settings.read_rate_limit, redis_url=_redis_url(settings), name="reads")


def _redis_url(settings: Settings) -> str | None:
    return settings.redis_url.get_secret_value() if settings.redis_url is not None else None
