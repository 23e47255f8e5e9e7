"""Reclaims the reservations of processes that died holding them, on a timer of its own.

A reservation a live process holds is renewed every third of its TTL (`hook._KeepAlive`), so only
a dead process's reservations expire. Every process that has a budget (server, worker, Lambda)
runs one `Reclaimer`, whether or not it runs the durable engine: every half TTL it gives back
the room of every expired reservation, whoever held it. So a dead process's room is free again
within 1.5 times AGENTKEEP_BUDGET_RESERVATION_TTL_S of its last renewal (90 s by default), with no
request needed to trigger it; reads (`GET /v1/usage`) only read. A reservation that is refused
for want of room also reclaims at once, before it gives up (`Budget`).

Two processes reclaiming at once cannot both give the same room back: the reclaim deletes the
reservation rows and releases only what it deleted (`Ledger.reclaim_expired`).
"""

from __future__ import annotations

import asyncio

import structlog

from agentkeep.budget.ledger import Ledger

__all__ = ["Reclaimer"]

log = structlog.get_logger("agentkeep.budget")


class Reclaimer:
    """A timer, not a task between its passes: `start` once the event loop runs, `stop` at shutdown."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.interval_s = ledger.ttl_s / 2
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        """Reclaim every `interval_s` from now on (the first pass one interval from now)."""
        if self._timer is None and not self._stopped:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._beat)

    def _beat(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pass())

    async def _pass(self) -> None:
        try:
            reclaimed = await self.ledger.reclaim_expired()
        except Exception as exc:  # the database may be back by the next pass
            log.warning("budget_reclaim_failed", error=type(exc).__name__)
        else:
            if reclaimed:
                log.info("budget_reservations_reclaimed", reservations=reclaimed)
        if not self._stopped:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._beat)

    async def stop(self) -> None:
        """No pass after this; one in flight is let finish, so it does not outlive the ledger."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
