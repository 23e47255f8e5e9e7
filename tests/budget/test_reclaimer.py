"""The reclaimer gives a dead process's reserved room back on its own timer, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from agentkeep.budget.ledger import Ledger
from agentkeep.budget.reclaimer import Reclaimer
from agentkeep.budget.records import SESSION, USER_DAY, Caps, utc_day
from agentkeep.stores.sql import SQLStore

WAIT_S = 10.0


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[list[SQLStore]]:
    """Two stores on one database: the process that dies, and the one that lives on."""
    opened = [SQLStore(database_url), SQLStore(database_url)]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


async def test_a_dead_processs_reservation_is_given_back_without_any_request(stores: list[SQLStore]) -> None:
    """A process reserves and dies (no settle, no renewal); the live one's reclaimer, untouched by any
    request, frees the room within its bound: the TTL, then at most half a TTL more."""
    ttl_s = 0.4
    dead, alive = Ledger(stores[0].engine, reservation_ttl_s=ttl_s), Ledger(stores[1].engine, reservation_ttl_s=ttl_s)
    user, caps = f"user-{secrets.token_hex(4)}", Caps(session=100, user_daily=100)
    await dead.reserve(user, "s", "r", 60, caps)
    dead.close()
    reserved_at = time.monotonic()
    reclaimer = Reclaimer(alive)
    reclaimer.start()
    try:
        while (await alive.counter(USER_DAY, user, utc_day())).held_nano != 0:
            assert time.monotonic() - reserved_at < WAIT_S, "the dead process's reservation was never reclaimed"
            await asyncio.sleep(0.05)
        assert time.monotonic() - reserved_at >= ttl_s  # not before it expired
        assert (await alive.counter(SESSION, user, "s")).held_nano == 0
    finally:
        await reclaimer.stop()
        alive.close()


async def test_a_stopped_reclaimer_makes_no_further_pass(stores: list[SQLStore]) -> None:
    """After `stop` (shutdown), an expired reservation stays held: nothing touches a closing ledger."""
    ttl_s = 0.2
    ledger = Ledger(stores[0].engine, reservation_ttl_s=ttl_s)
    user, caps = f"user-{secrets.token_hex(4)}", Caps(user_daily=100)
    reclaimer = Reclaimer(ledger)
    reclaimer.start()
    await reclaimer.stop()
    try:
        await ledger.reserve(user, "s", "r", 60, caps)
        await asyncio.sleep(ttl_s * 3)  # three reclaim intervals and more: any pass would have run
        assert (await ledger.counter(USER_DAY, user, utc_day())).held_nano == 60
    finally:
        ledger.close()
