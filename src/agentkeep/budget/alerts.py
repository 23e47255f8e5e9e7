"""Budget alerts: a warning log event and, when configured, a webhook POST per threshold crossing.

Exactly once per threshold, scope and period: the ledger's settle transaction inserts the alert's
unique row, and only the process whose insert succeeded sends it. Delivery happens in a background
task with retries, so a slow or failing receiver never holds up a run. A process that dies before
it delivered loses that POST (the row stays with `delivered_at` NULL for the operator to see).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from agentkeep.budget.ledger import Ledger
from agentkeep.budget.prices import to_nano, to_usd
from agentkeep.budget.records import USER_DAY, Alert
from agentkeep.errors import ConfigError

__all__ = ["AlertDispatcher", "parse_thresholds"]

log = structlog.get_logger("agentkeep.budget")

# Backoff between delivery attempts, in seconds: about a minute of trying in all.
DEFAULT_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


def parse_thresholds(text: str | None) -> list[int]:
    """`AGENTKEEP_BUDGET_ALERTS_USD` ("1,5") as sorted nano-dollar amounts."""
    if not text or not text.strip():
        return []
    amounts: set[int] = set()
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"AGENTKEEP_BUDGET_ALERTS_USD: {part.strip()!r} is not a number of USD") from None
        if value <= 0:
            raise ConfigError(f"AGENTKEEP_BUDGET_ALERTS_USD: thresholds must be above 0, got {part.strip()}")
        amounts.add(to_nano(value))
    return sorted(amounts)


def payload(alert: Alert) -> dict[str, Any]:
    """The webhook's JSON body."""
    user_scope = alert.scope == USER_DAY
    return {
        "scope": "user" if user_scope else "session",
        "id": alert.user_id if user_scope else alert.ref,
        "user_id": alert.user_id,
        "period": alert.ref if user_scope else None,
        "threshold": to_usd(alert.threshold_nano),
        "spent": to_usd(alert.spent_nano),
        "cap": None if alert.cap_nano is None else to_usd(alert.cap_nano),
        "time": datetime.fromtimestamp(alert.at, UTC).isoformat().replace("+00:00", "Z"),
    }


class AlertDispatcher:
    """Logs each alert at once and delivers it to the webhook in the background."""

    def __init__(
        self,
        ledger: Ledger,
        webhook_url: str | None,
        *,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        timeout_s: float = 10.0,
    ) -> None:
        self.ledger = ledger
        self.webhook_url = webhook_url
        self.backoff = tuple(backoff)
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Report `alerts`; returns at once."""
        for alert in alerts:
            body = payload(alert)
            log.warning("budget_alert", **body)
            if self.webhook_url:
                task = asyncio.get_running_loop().create_task(self._deliver(alert, body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, alert: Alert, body: dict[str, Any]) -> None:
        assert self.webhook_url is not None
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        attempts = 0
        delivered = False
        for delay in (*self.backoff, None):
            attempts += 1
            try:
                response = await self._client.post(self.webhook_url, json=body)
                delivered = response.status_code < 300
                # A 4xx other than 408/429 will not change on retry: the receiver refuses the body.
                if delivered or (400 <= response.status_code < 500 and response.status_code not in (408, 429)):
                    break
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            if delay is None:
                break
            log.info("budget_alert_retry", attempt=attempts, reason=reason, threshold=body["threshold"])
            await asyncio.sleep(delay)
        if not delivered:
            log.error("budget_alert_undelivered", attempts=attempts, scope=body["scope"], threshold=body["threshold"])
        with contextlib.suppress(Exception):  # bookkeeping only; the alert itself has been handled
            await self.ledger.mark_delivered(alert, attempts, delivered)

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` for deliveries in flight, then cancel the rest and close the client."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
