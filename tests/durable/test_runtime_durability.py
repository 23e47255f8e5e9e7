"""What the runtime does for a durable run, in process: resumed runs, detached runs, picklable failures."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkeep.config import Settings
from agentkeep.errors import BudgetExceeded, RunFailed
from agentkeep.failures import CancelRequested, Detached, ToolError, ToolInterrupted, classify
from agentkeep.hooks import Hook, ModelCall, ModelProceed, RunState, idempotency_key, idempotency_scope
from agentkeep.runtime import RunRequest, Runtime
from agentkeep.stores import RunStatus, open_store
from agentkeep.stores.sql import SQLStore


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(sqlite_url)
    yield opened
    await opened.close()


def _runtime(store: SQLStore, hooks: list[Hook]) -> Runtime:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("ok")])

    agent: Agent[None, str] = Agent(FunctionModel(answer), name="a")
    return Runtime(Settings(_env_file=None), {"a": agent}, store, hooks)  # type: ignore[call-arg]


class Refuses(Hook):
    async def before_run(self, run: RunState) -> None:
        raise BudgetExceeded("the session's budget is spent")


class Stops(Hook):
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def wrap_model_request(self, run: RunState, call: ModelCall, proceed: ModelProceed) -> ModelResponse:
        raise self.error


async def test_a_resumed_run_is_not_refused_by_an_admission_check_it_passed_when_it_started(store: SQLStore) -> None:
    """`resumed=True`: a before_run refusal is logged, not fatal; a new run is still refused."""
    runtime = _runtime(store, [Refuses()])
    fresh = await runtime.prepare(RunRequest(message="hi", background=True))
    with pytest.raises(RunFailed) as refused:
        await runtime.execute(fresh, durable=[])
    assert refused.value.error_type == "budget_exceeded"
    again = await runtime.prepare(RunRequest(message="hi", background=True))
    result = await runtime.execute(again, durable=[], resumed=True)
    assert result["status"] == "succeeded"


async def test_a_detached_run_records_nothing_and_keeps_its_session(store: SQLStore) -> None:
    """Another execution owns the run: no outcome is written, the lease stays with the run."""
    runtime = _runtime(store, [])
    prepared = await runtime.prepare(RunRequest(message="hi", session_id="kept", background=True))
    with pytest.raises(Detached):
        await runtime.execute(prepared, durable=[Stops(Detached())])
    record = await store.get_run("anonymous", prepared.record.run_id)
    assert record is not None and record.status is RunStatus.QUEUED and record.finished_at is None
    assert runtime.active_runs == 0


async def test_a_cancel_request_records_the_run_cancelled(store: SQLStore) -> None:
    """CancelRequested (a DBOS cancel seen at a step) ends the run `cancelled` and frees the session."""
    runtime = _runtime(store, [])
    prepared = await runtime.prepare(RunRequest(message="hi", session_id="c", background=True))
    with pytest.raises(RunFailed) as failed:
        await runtime.execute(prepared, durable=[Stops(CancelRequested())])
    assert failed.value.error_type == "cancelled"
    record = await store.get_run("anonymous", prepared.record.run_id)
    assert record is not None and record.status is RunStatus.CANCELLED


def test_failures_survive_a_checkpoint_round_trip() -> None:
    """Step errors are pickled by DBOS: a tool's failure keeps its text, whatever its cause."""

    class Unpicklable(Exception):
        def __init__(self, a: Any, b: Any) -> None:
            super().__init__(f"{a}/{b}")

    error = ToolError("fetch", Unpicklable(1, 2))
    restored = pickle.loads(pickle.dumps(error))
    assert str(restored) == str(error) == "tool 'fetch' failed: Unpicklable"
    assert classify(restored).error_type == "tool_error"
    interrupted = pickle.loads(pickle.dumps(ToolInterrupted("tool 'charge' was interrupted")))
    assert classify(interrupted).error_type == "tool_interrupted"
    assert classify(CancelRequested()).error_type == "cancelled"


def test_the_idempotency_key_is_scoped() -> None:
    """None outside a durable tool call; the step's key inside its scope."""
    assert idempotency_key() is None
    with idempotency_scope("run_x:6"):
        assert idempotency_key() == "run_x:6"
    assert idempotency_key() is None
