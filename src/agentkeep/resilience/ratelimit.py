"""Rate limits on every `/v1` route, per caller, over a moving window: AGENTKEEP_RATE_LIMIT for the
requests that start or resume runs (which cost model calls), AGENTKEEP_READ_RATE_LIMIT, higher, for
every other one (polling a run, reading a session), so a client that polls does not spend its runs.

A caller is its API key (the bearer token, hashed: the key itself is never stored) or, for a
request without one (auth off), its client address. Counts live in memory, or in Redis when
AGENTKEEP_REDIS_URL is set so that a fleet shares one budget per caller. (In memory the windows
are our own: `limits`' memory storage hands a thread a sweep of every window after nearly every
hit, which costs more than the rest of the check.) Every `/v1` response says where the caller stands:

    RateLimit-Limit: 60         RateLimit-Remaining: 12         RateLimit-Reset: 17 (seconds)

and a request over the limit gets 429 `rate_limited` with `Retry-After`. `/health`, `/ready`,
`/metrics` and the console are outside `/v1`, so probes and scrapes are never limited. A storage
that fails (Redis down) lets requests through and logs: the limit protects the service, so it
must not become the outage.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from limits import RateLimitItem, WindowStats, parse
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkeep.errors import RateLimited, send_envelope

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool  # the `redis` extra, imported only when configured

__all__ = ["RateLimit", "RateLimiter", "caller_key"]

log = structlog.get_logger("agentkeep.resilience")

_NAMESPACE = "agentkeep"
_FAILURE_LOG_INTERVAL_S = 30.0
_SWEEP_HITS = 10_000


class RateLimiter:
    """One limit over one storage: Redis when `redis_url` is given, else this process's memory.

    The storage is built on first use, inside the running event loop its locks and connections
    belong to; `aclose()` releases them (the server calls it at shutdown).
    """

    def __init__(
        self, limit: str, *, redis_url: str | None = None, storage: Storage | None = None, name: str = "all"
    ) -> None:
        self.item: RateLimitItem = parse(limit)
        self.name = name  # two limiters on one storage count apart, even with the same limit
        self._redis_url = redis_url
        self._storage = storage
        self._pool: ConnectionPool | None = None
        self._limiter: MovingWindowRateLimiter | None = None
        self._memory = _MemoryWindows(self.item) if redis_url is None and storage is None else None

    async def hit(self, key: str) -> tuple[bool, WindowStats]:
        """Count one request by `key`; whether it is allowed, and the window after it."""
        if self._memory is not None:
            return self._memory.hit(key)
        if self._limiter is None:
            self._limiter = MovingWindowRateLimiter(self._open_storage())
        allowed = await self._limiter.hit(self.item, _NAMESPACE, self.name, key)
        return allowed, await self._limiter.get_window_stats(self.item, _NAMESPACE, self.name, key)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    def _open_storage(self) -> Storage:
        if self._storage is not None:
            return self._storage
        assert self._redis_url is not None  # without either, `hit` counts in `_MemoryWindows`
        from redis.asyncio import ConnectionPool

        # Our own pool, so that `aclose()` can close the connections `limits` would leave open.
        self._pool = ConnectionPool.from_url(self._redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        # `limits` types its options as scalars, but hands them to redis-py, which takes a pool.
        options: dict[str, Any] = {"connection_pool": self._pool}
        return RedisStorage(f"async+{self._redis_url}", implementation="redispy", **options)


class _MemoryWindows:
    """A moving window per caller in this process: the times of its hits within the last period.

    The same answers as `limits`' moving window, without its per-hit sweep on a thread: a window
    drops its expired hits when next counted, and windows left empty are dropped every `_SWEEP_HITS`.
    """

    def __init__(self, item: RateLimitItem) -> None:
        self.amount = item.amount
        self.period_s = item.get_expiry()
        self._hits: dict[str, deque[float]] = {}
        self._since_sweep = 0

    def hit(self, key: str) -> tuple[bool, WindowStats]:
        now = time.time()
        self._since_sweep += 1
        if self._since_sweep >= _SWEEP_HITS:
            self._since_sweep = 0
            self._sweep(now)
        hits = self._hits.setdefault(key, deque())
        _expire(hits, now - self.period_s)
        allowed = len(hits) < self.amount
        if allowed:
            hits.append(now)
        start = hits[0] if hits else now
        return allowed, WindowStats(start + self.period_s, self.amount - len(hits))

    def _sweep(self, now: float) -> None:
        for key in list(self._hits):
            _expire(self._hits[key], now - self.period_s)
            if not self._hits[key]:
                del self._hits[key]


def _expire(hits: deque[float], before: float) -> None:
    while hits and hits[0] <= before:
        hits.popleft()


def caller_key(scope: Scope) -> str:
    """Who is asking: a hash of the bearer token, or the client address when there is none."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    client = scope.get("client")
    return "addr:" + (client[0] if client else "unknown")


class RateLimit:
    """ASGI middleware enforcing the limits per caller on `/v1` routes.

    `limiter` counts every `/v1` request, unless `reads` is given: then `limiter` counts those that
    `starts_run(method, path)` says start or resume a run, and `reads` every other one.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        reads: RateLimiter | None = None,
        starts_run: Callable[[str, str], bool] | None = None,
        on_limited: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.reads = reads
        self.starts_run = starts_run or (lambda _method, _path: True)
        self._on_limited = on_limited
        self._last_failure_log = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/v1" or path.startswith("/v1/")) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        if self.reads is not None and not self.starts_run(scope["method"], path):
            limiter = self.reads
        try:
            allowed, stats = await limiter.hit(caller_key(scope))
        except Exception as exc:
            self._storage_failed(exc)
            await self.app(scope, receive, send)
            return
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        item = limiter.item
        headers = [
            (b"ratelimit-limit", str(item.amount).encode()),
            (b"ratelimit-remaining", str(max(0, stats.remaining)).encode()),
            (b"ratelimit-reset", str(reset).encode()),
        ]
        if not allowed:
            if self._on_limited is not None:
                self._on_limited()
            await _reject(send, headers, retry_after=max(1, reset), limit=str(item))
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, with_headers)

    def _storage_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_failure_log >= _FAILURE_LOG_INTERVAL_S:
            self._last_failure_log = now
            log.warning("rate_limit_storage_failed", exc_type=type(exc).__name__, error=str(exc))


async def _reject(send: Send, headers: list[tuple[bytes, bytes]], *, retry_after: int, limit: str) -> None:
    message = f"rate limit of {limit} exceeded; retry in {retry_after} s"
    await send_envelope(send, RateLimited(message, retry_after=retry_after), headers)
