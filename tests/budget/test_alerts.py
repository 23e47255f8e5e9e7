"""Alert delivery: a real HTTP receiver, retries in the background, and the thresholds setting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from agentkeep.budget.alerts import AlertDispatcher, parse_thresholds
from agentkeep.budget.ledger import Ledger
from agentkeep.budget.prices import to_nano
from agentkeep.budget.records import USER_DAY, Alert, Caps, Entry
from agentkeep.budget.tables import alerts
from agentkeep.errors import ConfigError
from agentkeep.stores.sql import SQLStore
from tests.budget.support import WebhookReceiver


@pytest.fixture
async def ledger(sqlite_url: str) -> AsyncIterator[Ledger]:
    store = SQLStore(sqlite_url)
    await store.open()
    yield Ledger(store.engine)
    await store.close()


async def _cross(ledger: Ledger, thresholds: list[int]) -> list[Alert]:
    """Spend $0.60 in one settle; return the user's-day alerts it claimed."""
    entry = Entry("r", "alice", "s", "agent", "model", "m", 1, 1, to_nano(0.6))
    settled = await ledger.settle(entry, None, caps=Caps(user_daily=to_nano(1)), thresholds=thresholds)
    return [a for a in settled.alerts if a.scope == USER_DAY]


async def test_a_failing_receiver_gets_the_alert_once_it_recovers(ledger: Ledger) -> None:
    """Two 503s, then 200: the alert arrives once, with the contract's fields, and is marked delivered."""
    with WebhookReceiver(fail_first=2) as receiver:
        dispatcher = AlertDispatcher(ledger, receiver.url, backoff=(0.01, 0.01, 0.01))
        crossed = await _cross(ledger, [to_nano(0.5)])
        dispatcher.notify(crossed)
        await dispatcher.drain(timeout=10)
    [body] = receiver.received()
    assert receiver.attempts == 3
    assert set(body) >= {"scope", "id", "threshold", "spent", "cap", "time"}
    assert (body["scope"], body["id"], body["threshold"], body["spent"], body["cap"]) == (
        "user",
        "alice",
        0.5,
        0.6,
        1.0,
    )
    async with ledger.engine.connect() as conn:
        query = sa.select(alerts.c.attempts, alerts.c.delivered_at).where(alerts.c.scope == USER_DAY)
        rows = (await conn.execute(query)).all()
    assert [(attempts, delivered is not None) for attempts, delivered in rows] == [(3, True)]


async def test_notify_returns_at_once_while_delivery_is_pending(ledger: Ledger) -> None:
    """A receiver that never answers in time does not hold the caller: notify() is synchronous."""
    with WebhookReceiver(fail_first=100) as receiver:
        dispatcher = AlertDispatcher(ledger, receiver.url, backoff=(60,))
        crossed = await _cross(ledger, [to_nano(0.5)])
        loop = asyncio.get_running_loop()
        started = loop.time()
        dispatcher.notify(crossed)
        assert loop.time() - started < 0.5
        await dispatcher.drain(timeout=0.5)  # cancels the delivery stuck in its backoff
    assert receiver.received() == []


def test_thresholds_are_parsed_sorted_and_validated() -> None:
    """`1,5` → two thresholds; blanks mean none; junk is a clear ConfigError."""
    assert parse_thresholds("5, 1") == [to_nano(1), to_nano(5)]
    assert parse_thresholds(None) == [] and parse_thresholds(" ") == []
    with pytest.raises(ConfigError, match="not a number"):
        parse_thresholds("1,five")
    with pytest.raises(ConfigError, match="above 0"):
        parse_thresholds("0")
