"""`Takeover` on both databases: of two live workers only one takes a dead one's runs over, for a while."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from agentkeep.durable.setup import Identity
from agentkeep.durable.takeover import Takeover
from agentkeep.stores import open_store
from agentkeep.stores.schema import workers
from agentkeep.stores.sql import SQLStore


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(database_url)
    assert isinstance(opened, SQLStore)
    try:
        yield opened
    finally:
        await opened.close()


async def test_only_one_live_worker_claims_a_dead_one_and_its_lease_expires(store: SQLStore) -> None:
    """Stale after RECOVERY_S/2; two claimers, one winner; the claim lapses after RECOVERY_S; other
    versions and a worker that beats again are left alone."""
    recovery_s = 10.0
    tag = secrets.token_hex(3)
    dead, b, c = (Takeover(store, Identity(f"{n}-{tag}", "v1"), recovery_s) for n in ("dead", "b", "c"))
    other_version = Takeover(store, Identity(f"old-{tag}", "v0"), recovery_s)
    for worker in (dead, b, c, other_version):
        await worker.beat()
    assert await b.claim_stale() == []  # everyone is fresh

    await _age(store, f"dead-{tag}", f"old-{tag}", by=recovery_s / 2 + 1)
    assert await b.claim_stale() == [f"dead-{tag}"]
    assert await c.claim_stale() == []  # b holds the lease
    await _age_claim(store, f"dead-{tag}", by=recovery_s + 1)
    assert await c.claim_stale() == [f"dead-{tag}"]  # b's lease expired: b died too
    await dead.beat()  # it came back: its own launch resumed its runs
    assert await b.claim_stale() == [] and await c.claim_stale() == []
    await dead.retire()
    assert f"dead-{tag}" in await b.claim_stale()


async def _age(store: SQLStore, *executors: str, by: float) -> None:
    async with store.writer() as conn:
        await conn.execute(
            workers.update()
            .where(workers.c.executor_id.in_(executors))
            .values(heartbeat_at=workers.c.heartbeat_at - by)
        )


async def _age_claim(store: SQLStore, executor: str, by: float) -> None:
    async with store.writer() as conn:
        await conn.execute(
            workers.update().where(workers.c.executor_id == executor).values(claimed_at=workers.c.claimed_at - by)
        )
