"""When a failed model request is worth sending again, and how long to wait first.

Transient failures are the ones a later identical request can survive: HTTP 429, 500, 502, 503,
504 (and the provider categories Pydantic AI maps them to), connection resets and timeouts. A
request the provider rejected as malformed, unauthorised or over quota fails the same way every
time, so it is never retried. The wait is exponential backoff with full jitter (a random delay in
[0, min(cap, base · 2^(attempt-1))]), so a fleet that failed together does not retry together;
a provider's `Retry-After` raises it to at least what was asked. A retry that would end past the
run's deadline is not made: the caller gets the failure now rather than a timeout later.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pydantic_ai import exceptions as pai

from agentkeep.resilience.breaker import ModelCircuitOpen

__all__ = [
    "TRANSIENT_STATUSES",
    "RetryPolicy",
    "exponential_backoff",
    "full_jitter",
    "is_circuit_open",
    "is_rate_limit",
    "is_transient",
    "leaf_errors",
    "retry_after",
]

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
_TRANSIENT_TYPES = (
    pai.ModelRateLimitError,
    pai.ModelUnavailableError,
    pai.ModelServerError,
    pai.ModelConnectionError,  # resets, refused connections, transport timeouts
    pai.ModelRequestTimeout,
)
_PERMANENT_TYPES = (pai.ModelQuotaExceededError, pai.ModelRequestRejectedError)


def exponential_backoff(attempt: int, *, base: float, cap: float) -> float:
    """The ceiling of the wait after failed attempt number `attempt` (1-based): base · 2^(attempt-1), capped."""
    return float(min(cap, base * 2.0 ** max(0, attempt - 1)))


def full_jitter(attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """A uniformly random wait in [0, exponential_backoff(attempt)]."""
    return rand() * exponential_backoff(attempt, base=base, cap=cap)


def leaf_errors(error: BaseException) -> Iterator[BaseException]:
    """The errors inside `error`: itself, or every member of an exception group (a FallbackModel's)."""
    if isinstance(error, BaseExceptionGroup):
        for member in error.exceptions:
            yield from leaf_errors(member)
    else:
        yield error


def is_circuit_open(error: BaseException) -> bool:
    """True when every model behind `error` was refused by its open breaker."""
    leaves = list(leaf_errors(error))
    return bool(leaves) and all(isinstance(e, ModelCircuitOpen) for e in leaves)


def is_rate_limit(error: BaseException) -> bool:
    return isinstance(error, pai.ModelRateLimitError) or (
        isinstance(error, pai.ModelHTTPError) and error.status_code == 429
    )


def _is_transient_leaf(error: BaseException) -> bool:
    if isinstance(error, (ModelCircuitOpen, *_PERMANENT_TYPES)):
        return False
    if isinstance(error, _TRANSIENT_TYPES):
        return True
    return isinstance(error, pai.ModelHTTPError) and error.status_code in TRANSIENT_STATUSES


def is_transient(error: BaseException) -> bool:
    """Could the same request succeed if sent again? For a group: if any member could."""
    return any(_is_transient_leaf(e) for e in leaf_errors(error))


def retry_after(error: BaseException) -> float | None:
    """The longest wait any provider behind `error` asked for, if one did."""
    waits = [e.retry_after for e in leaf_errors(error) if isinstance(e, pai.ModelAPIError) and e.retry_after]
    return max(waits) if waits else None


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to send a model request, and how long to wait between attempts."""

    max_attempts: int = 3  # attempts in all, the first included
    base_s: float = 0.5  # ceiling of the first wait
    cap_s: float = 8.0  # ceiling of any jittered wait
    max_retry_after_s: float = 60.0  # a provider asking for longer than this is treated as down
    rand: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def delay(self, attempt: int, error: BaseException, *, time_left: float) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None when `error` must not be retried.

        `attempt` is the number of the attempt that just failed (1-based); `time_left` is what
        remains of the run's deadline. A wait that would leave no time for the next attempt is
        refused, as is one longer than `max_retry_after_s`.
        """
        if attempt >= self.max_attempts or not is_transient(error):
            return None
        wait = full_jitter(attempt, base=self.base_s, cap=self.cap_s, rand=self.rand)
        asked = retry_after(error)
        if asked is not None:
            if asked > self.max_retry_after_s:
                return None
            wait = max(wait, asked)
        if wait >= time_left:
            return None
        return wait
