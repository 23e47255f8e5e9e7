"""The budget's records: caps, ledger entries, reservations, counter states and alerts.

Amounts are integer nano-dollars. Scopes are `session` (ref = the session id) and `user_day`
(ref = the UTC day, YYYY-MM-DD); a run's own cap is kept in memory by the hook, since one process
executes a run at a time.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = [
    "NO_CAPS",
    "SESSION",
    "USER_DAY",
    "Alert",
    "Caps",
    "CounterState",
    "Entry",
    "Refused",
    "Reservation",
    "Settled",
    "utc_day",
]

SESSION = "session"
USER_DAY = "user_day"


def utc_day(ts: float | None = None) -> str:
    """The UTC day of `ts` (default: now), the period of a user's daily budget."""
    # POSIX time has exactly 86400 s a day, so the day's number names it; formatting it is what
    # costs, once a day rather than on every settle.
    return _day_name(int((time.time() if ts is None else ts) // 86400))


@functools.lru_cache(maxsize=4)
def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Caps:
    """Hard caps in nano-dollars; None where no cap is configured."""

    run: int | None = None
    session: int | None = None
    user_daily: int | None = None

    @property
    def any(self) -> bool:
        return self.run is not None or self.session is not None or self.user_daily is not None

    def of(self, scope: str) -> int | None:
        return self.session if scope == SESSION else self.user_daily


NO_CAPS = Caps()


@dataclass(frozen=True)
class Entry:
    """One priced event for the ledger: a model request or a tool call."""

    run_id: str
    user_id: str
    session_id: str
    agent: str
    kind: str  # "model" or "tool"
    model: str
    input_tokens: int
    output_tokens: int
    cost_nano: int | None


@dataclass(frozen=True)
class Reservation:
    """An amount held against a user's day and a session until settled, released or expired."""

    id: str
    user_id: str
    session_id: str
    day: str
    amount_nano: int


@dataclass(frozen=True)
class CounterState:
    """A counter as read: settled spend, amounts held by requests in flight, and whether it is closed."""

    spent_nano: int = 0
    held_nano: int = 0
    closed: bool = False


@dataclass(frozen=True)
class Alert:
    """A threshold crossed, won by this process: it, and only it, delivers the notification."""

    scope: str  # "session" or "user_day"
    user_id: str
    ref: str  # the session id, or the UTC day
    threshold_nano: int
    spent_nano: int
    cap_nano: int | None
    at: float


@dataclass
class Settled:
    """What a settle changed: the new totals and the alerts this process must send."""

    session_spent_nano: int
    day_spent_nano: int
    held_released: bool
    alerts: list[Alert] = field(default_factory=list)


class Refused(Exception):
    """A reservation did not fit under the cap of `scope` (session or user_day)."""

    def __init__(self, scope: str, state: CounterState, cap: int) -> None:
        super().__init__(scope)
        self.scope, self.state, self.cap = scope, state, cap
