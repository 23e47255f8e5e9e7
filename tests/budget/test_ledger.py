"""The ledger and its counters, on SQLite and PostgreSQL: one contract suite for both.

Two engines on one database stand in for two processes; each test uses its own user id, so tests
sharing the module's PostgreSQL database do not see each other's spend.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from agentkeep.budget.ledger import Ledger
from agentkeep.budget.records import SESSION, USER_DAY, Caps, Entry, Refused, Reservation, utc_day
from agentkeep.stores.sql import SQLStore


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[list[SQLStore]]:
    """Two stores (two connection pools) on the same database, like two processes."""
    opened = [SQLStore(database_url), SQLStore(database_url)]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


def _user() -> str:
    return f"user-{secrets.token_hex(4)}"


def _entry(user: str, session: str, cost: int | None, run: str = "run-1") -> Entry:
    return Entry(run, user, session, "agent", "model", "m", 10, 20, cost)


async def test_concurrent_reservations_from_two_processes_never_overcommit_a_cap(stores: list[SQLStore]) -> None:
    """40 concurrent reservations of 30 against a daily cap of 100, from two pools: exactly 3 fit."""
    ledgers = [Ledger(s.engine) for s in stores]
    user, caps = _user(), Caps(user_daily=100)

    async def attempt(i: int) -> Reservation | None:
        try:
            return await ledgers[i % 2].reserve(user, f"s{i}", f"r{i}", 30, caps)
        except Refused:
            return None

    held = [r for r in await asyncio.gather(*(attempt(i) for i in range(40))) if r is not None]
    assert len(held) == 3
    state = await ledgers[0].counter(USER_DAY, user, utc_day())
    assert (state.spent_nano, state.held_nano) == (0, 90)
    await asyncio.gather(*(ledgers[0].settle(_entry(user, r.session_id, 25), r, caps=caps) for r in held))
    state = await ledgers[1].counter(USER_DAY, user, utc_day())
    assert (state.spent_nano, state.held_nano) == (75, 0)


async def test_a_settle_moves_the_real_cost_from_held_to_spent_and_a_release_gives_it_all_back(
    stores: list[SQLStore],
) -> None:
    """Reserve 50, settle at 20: spent 20, held 0, one ledger row; a released reservation leaves no trace."""
    ledger = Ledger(stores[0].engine)
    user, caps = _user(), Caps(session=100)
    reservation = await ledger.reserve(user, "s", "r", 50, caps)
    assert (await ledger.counter(SESSION, user, "s")).held_nano == 50
    await ledger.settle(_entry(user, "s", 20, run="r"), reservation, caps=caps)
    session = await ledger.counter(SESSION, user, "s")
    assert (session.spent_nano, session.held_nano) == (20, 0)
    assert await ledger.run_total("r") == 20
    second = await ledger.reserve(user, "s", "r2", 80, caps)
    await ledger.release(second)
    assert await ledger.counter(SESSION, user, "s") == session
    with pytest.raises(Refused) as refused:
        await ledger.reserve(user, "s", "r3", 81, caps)
    assert refused.value.scope == SESSION and refused.value.state.spent_nano == 20


async def test_an_expired_reservation_is_reclaimed_once_even_by_two_processes(stores: list[SQLStore]) -> None:
    """A reservation whose owner died is released exactly once, whichever processes look for it."""
    ledgers = [Ledger(s.engine, reservation_ttl_s=0.2) for s in stores]
    user, caps = _user(), Caps(user_daily=100)
    made = time.time()
    await ledgers[0].reserve(user, "s", "r", 70, caps)
    with pytest.raises(Refused):
        await ledgers[1].reserve(user, "s2", "r2", 70, caps)
    await asyncio.sleep(max(0.0, made + 0.25 - time.time()))  # past the TTL by the wall clock
    counts = await asyncio.gather(*(ledgers[i % 2].reclaim_expired() for i in range(6)))
    assert sum(counts) == 1
    assert (await ledgers[0].counter(USER_DAY, user, utc_day())).held_nano == 0
    await ledgers[1].reserve(user, "s2", "r2", 70, caps)


async def test_a_reservation_reclaimed_while_in_flight_still_settles_its_spend(stores: list[SQLStore]) -> None:
    """If a slow request outlives its reservation, the settle counts the spend and releases nothing twice."""
    ledger = Ledger(stores[0].engine, reservation_ttl_s=0.01)
    user, caps = _user(), Caps(user_daily=100)
    reservation = await ledger.reserve(user, "s", "r", 60, caps)
    await asyncio.sleep(0.05)
    assert await ledger.reclaim_expired() >= 1
    settled = await ledger.settle(_entry(user, "s", 40), reservation, caps=caps)
    assert not settled.held_released
    state = await ledger.counter(USER_DAY, user, utc_day())
    assert (state.spent_nano, state.held_nano) == (40, 0)


async def test_an_alert_threshold_is_claimed_once_across_concurrent_settles(stores: list[SQLStore]) -> None:
    """Ten settles of 15 from two pools cross 50 and 100 once each, and only one settle claims each."""
    ledgers = [Ledger(s.engine) for s in stores]
    user = _user()
    settled = await asyncio.gather(
        *(ledgers[i % 2].settle(_entry(user, f"s{i}", 15), None, thresholds=[50, 100]) for i in range(10))
    )
    claimed = [a for s in settled for a in s.alerts]
    assert sorted((a.scope, a.threshold_nano) for a in claimed) == [(USER_DAY, 50), (USER_DAY, 100)]
    assert all(a.spent_nano >= a.threshold_nano for a in claimed)


async def test_an_overrun_closes_the_scope(stores: list[SQLStore]) -> None:
    """A settle that closes a scope refuses every later reservation there, however much room is left."""
    ledger = Ledger(stores[0].engine)
    user, caps = _user(), Caps(session=1000)
    reservation = await ledger.reserve(user, "s", "r", 10, caps)
    await ledger.settle(_entry(user, "s", 30), reservation, close=[SESSION], caps=caps)
    assert (await ledger.counter(SESSION, user, "s")).closed
    with pytest.raises(Refused):
        await ledger.reserve(user, "s", "r2", 1, caps)


async def test_totals_by_day_month_and_overall_come_from_the_ledger(stores: list[SQLStore]) -> None:
    """Unpriced entries add tokens but no cost; the user's day and month sum the priced ones."""
    ledger = Ledger(stores[0].engine)
    user = _user()
    before = await ledger.total()
    for cost in (5, None, 7):
        await ledger.settle(_entry(user, "s", cost), None)
    assert await ledger.user_totals(user, utc_day()) == (12, 12)
    assert await ledger.user_totals(user, "1999-01-01") == (0, 0)
    assert await ledger.total() - before == 12
