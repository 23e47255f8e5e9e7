"""The run scope every kind of run executes in (`Runtime.scope`), in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

from agentkeep.config import Settings
from agentkeep.errors import RunFailed
from agentkeep.failures import Detached
from agentkeep.hooks import Hook, RunOutcome, RunState
from agentkeep.runtime import Runtime
from agentkeep.stores import RunStatus, open_store
from agentkeep.stores.base import RunRecord
from agentkeep.stores.sql import SQLStore


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(sqlite_url)
    yield opened
    await opened.close()


class Seen(Hook):
    """Remembers the outcome each run ended with."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    async def after_run(self, run: RunState, outcome: RunOutcome) -> None:
        self.outcomes.append(outcome.status)


def _runtime(store: SQLStore, seen: Seen) -> Runtime:
    agent: Agent[None, str] = Agent(TestModel(), name="a")
    return Runtime(Settings(_env_file=None), {"a": agent}, store, [seen])  # type: ignore[call-arg]


async def _queued(runtime: Runtime) -> RunRecord:
    record = runtime.new_record(agent="task:t", input="{}", user_id="alice", background=True)
    await runtime.store.create_run(record)
    return record


async def test_a_scope_counts_its_run_until_it_ends_and_records_the_outcome_once(store: SQLStore) -> None:
    """Inside the scope the run is one of `active_runs`; a failure is recorded with its type, the
    hooks' after_run see it, and the count drops back to zero."""
    seen = Seen()
    runtime = _runtime(store, seen)
    record = await _queued(runtime)
    async with runtime.scope(record, durable=[]) as run:
        assert runtime.active_runs == 1
        await run.fail(RunFailed("tool_error", "step 'x' failed"))
    assert runtime.active_runs == 0 and seen.outcomes == ["failed"]
    stored = await store.get_run("alice", record.run_id)
    assert stored is not None and stored.status is RunStatus.FAILED and stored.error_type == "tool_error"


async def test_a_durable_run_interrupted_by_a_drain_leaves_as_detached_and_records_nothing(store: SQLStore) -> None:
    """`interrupt()` reaches a task-like run blocked in its scope: it leaves as `Detached` (not a
    cancellation), after_run sees `interrupted`, the record is untouched for a later execution,
    and the drain's wait for idle returns."""
    seen = Seen()
    runtime = _runtime(store, seen)
    record = await _queued(runtime)
    entered = asyncio.Event()

    async def blocked() -> None:
        async with runtime.scope(record, durable=[]):
            entered.set()
            await asyncio.Event().wait()

    running = asyncio.ensure_future(blocked())
    await asyncio.wait_for(entered.wait(), 5)
    assert runtime.active_runs == 1 and not await runtime.wait_idle(0.01)
    assert runtime.interrupt() == 1
    with pytest.raises(Detached):
        await running
    assert await runtime.wait_idle(1) and seen.outcomes == ["interrupted"]
    stored = await store.get_run("alice", record.run_id)
    assert stored is not None and stored.status is RunStatus.QUEUED and stored.finished_at is None
