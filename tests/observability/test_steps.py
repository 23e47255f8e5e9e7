"""The `StepRecorder` hook in the runtime, with Pydantic AI's FunctionModel at the model boundary."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from agentkeep.config import Settings
from agentkeep.observability.steps import StepRecorder
from agentkeep.runtime import RunRequest, Runtime
from agentkeep.stores import open_store
from agentkeep.stores.sql import SQLStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLStore]:
    opened = await open_store(f"sqlite:///{tmp_path / 'agentkeep.db'}")
    try:
        yield opened
    finally:
        await opened.close()


def _parallel_then_answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """First call `slow` and `fast` together, then answer; 10 in and 2 out tokens a request."""
    usage = RequestUsage(input_tokens=10, output_tokens=2)
    if any(isinstance(p, ToolReturnPart) for p in messages[-1].parts):
        return ModelResponse(parts=[TextPart("done")], usage=usage)
    return ModelResponse(parts=[ToolCallPart("slow", {}), ToolCallPart("fast", {})], usage=usage)


def _agent() -> Agent[None, str]:
    agent: Agent[None, str] = Agent(FunctionModel(_parallel_then_answer, model_name="fn"), name="a")

    @agent.tool_plain
    async def slow() -> str:
        """Finishes after `fast` although it started first."""
        await asyncio.sleep(0.05)
        return "slow"

    @agent.tool_plain
    def fast() -> str:
        """Asks the model to try again, once."""
        raise ModelRetry("try again")

    return agent


async def test_steps_are_stored_in_the_order_they_started_with_tokens_and_errors(store: SQLStore) -> None:
    """Two tools called together: `slow` started first and is listed first though `fast` finished first;
    a tool asking for a retry is an error step named by its exception; the runtime stores it all once."""
    recorder = StepRecorder()
    runtime = Runtime(Settings(database_url="sqlite://", auth="off"), {"a": _agent()}, store, hooks=[recorder])  # type: ignore[arg-type]
    result = await runtime.run(RunRequest(message="go"))
    record = await store.get_run("anonymous", result["run_id"])
    assert record is not None and record.steps_json is not None
    steps: list[dict[str, Any]] = json.loads(record.steps_json)
    assert [(s["index"], s["kind"], s["name"], s["outcome"]) for s in steps] == [
        (0, "model_request", "fn", "ok"),
        (1, "tool_call", "slow", "ok"),
        (2, "tool_call", "fast", "error"),
        (3, "model_request", "fn", "ok"),
    ]
    assert steps[2]["error"] == "ToolRetryError"
    assert steps[1]["duration_ms"] >= 50 > steps[2]["duration_ms"]
    assert (steps[0]["input_tokens"], steps[0]["output_tokens"]) == (10, 2)
    assert recorder.live(result["run_id"]) is None  # forgotten once the run ended


async def test_live_steps_show_a_run_in_flight(store: SQLStore) -> None:
    """While the model is answering, `live` lists the steps finished so far; other runs read None."""
    gate = asyncio.Event()

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(p, ToolReturnPart) for p in messages[-1].parts):
            await gate.wait()
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(parts=[ToolCallPart("noop", {})])

    agent: Agent[None, str] = Agent(FunctionModel(answer, model_name="fn"), name="a")

    @agent.tool_plain
    def noop() -> str:
        """Does nothing."""
        return ""

    recorder = StepRecorder()
    runtime = Runtime(Settings(database_url="sqlite://", auth="off"), {"a": agent}, store, hooks=[recorder])  # type: ignore[arg-type]
    prepared = await runtime.prepare(RunRequest(message="go"))
    task = asyncio.ensure_future(runtime.execute(prepared))
    run_id = prepared.record.run_id
    for _ in range(200):  # the run reaches its second model request within a few event-loop turns
        live = recorder.live(run_id)
        if live is not None and len(live) == 2:
            break
        await asyncio.sleep(0.01)
    assert [s["kind"] for s in recorder.live(run_id) or []] == ["model_request", "tool_call"]
    assert recorder.live("run_other") is None
    gate.set()
    await task
    assert recorder.live(run_id) is None
