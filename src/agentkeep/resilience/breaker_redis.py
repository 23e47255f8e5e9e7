"""Breaker state in Redis, shared by every process pointed at the same server (`AGENTKEEP_REDIS_URL`).

Each breaker is one hash, `agentkeep:breaker:<model>`, with fields `s` (state), `f` (consecutive
failures), `o` (opened at) and `t` (trial taken at). Every transition is one Lua script, so it is
atomic across the fleet, and reads the time from Redis itself, so the processes' clocks never
have to agree. Needs the `redis` extra.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from agentkeep.resilience.breaker import BreakerBackend, CircuitState, Permit

__all__ = ["RedisBreakerBackend"]

_PREFIX = "agentkeep:breaker:"
# A breaker nobody touched for a day is closed again: an idle key must not live for ever.
_TTL_S = 86_400

_NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

# ARGV: reset_s, ttl, take_trial (1 or 0).
# Returns {allowed, state, retry_after as a string (Lua numbers become integers)}.
_ACQUIRE = (
    _NOW
    + """
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
if s == 0 then return {1, 0, '0'} end
local reset = tonumber(ARGV[1])
local since = tonumber(redis.call('HGET', KEYS[1], s == 2 and 'o' or 't') or '0')
if now - since < reset then return {0, s, tostring(reset - (now - since))} end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 's', 1, 't', now)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return {1, 1, '0'}
"""
)

# ARGV: ttl. Returns the state after the success.
_SUCCESS = """
local v = redis.call('HMGET', KEYS[1], 's', 'f')
local s = tonumber(v[1] or '0')
if s == 2 then return 2 end
if s == 0 and tonumber(v[2] or '0') == 0 then return 0 end
redis.call('HSET', KEYS[1], 's', 0, 'f', 0)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 0
"""

# ARGV: threshold, ttl. Returns the state after the failure.
_FAILURE = (
    _NOW
    + """
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
if s == 2 then return 2 end
local f = redis.call('HINCRBY', KEYS[1], 'f', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
if s == 1 or f >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 's', 2, 'o', now, 'f', 0)
  return 2
end
return s
"""
)


class RedisBreakerBackend(BreakerBackend):
    """Breaker state shared through Redis."""

    def __init__(self, url: str, failures: int, reset_s: float, *, client: Redis | None = None) -> None:
        super().__init__(failures, reset_s)
        # Short timeouts: the breaker sits on every model request, and a slow Redis must fail open fast.
        self._redis: Redis = client or Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._success = self._redis.register_script(_SUCCESS)
        self._failure = self._redis.register_script(_FAILURE)

    async def acquire(self, key: str) -> Permit:
        return await self._permit(key, take_trial=True)

    async def peek(self, key: str) -> Permit:
        return await self._permit(key, take_trial=False)

    async def _permit(self, key: str, *, take_trial: bool) -> Permit:
        args = [self.reset_s, _TTL_S, 1 if take_trial else 0]
        allowed, state, retry_after = await self._acquire(keys=[_PREFIX + key], args=args)
        return Permit(bool(allowed), CircuitState(int(state)), float(_text(retry_after)))

    async def record_success(self, key: str) -> CircuitState:
        return CircuitState(int(await self._success(keys=[_PREFIX + key], args=[_TTL_S])))

    async def record_failure(self, key: str) -> CircuitState:
        return CircuitState(int(await self._failure(keys=[_PREFIX + key], args=[self.failures, _TTL_S])))

    async def state(self, key: str) -> CircuitState:
        value = await self._redis.hget(_PREFIX + key, "s")
        return CircuitState(int(_text(value or b"0")))

    async def reset(self, key: str) -> None:
        """Forget a breaker's state (tests and operators). A process that saw it open keeps refusing
        until the reset time it was told; restart it to forget sooner."""
        await self._redis.delete(_PREFIX + key)

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
