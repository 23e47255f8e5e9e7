"""The Telemetry hook inside the real runtime, with Pydantic AI's FunctionModel at the model boundary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkeep.config import Settings
from agentkeep.errors import CircuitOpen, RunFailed
from agentkeep.hooks import Hook, ModelCall, ModelProceed, RunState
from agentkeep.observability import Telemetry
from agentkeep.observability.metrics import REGISTRY
from agentkeep.runtime import RunRequest, Runtime
from agentkeep.stores import open_store
from agentkeep.stores.sql import SQLStore
from tests.observability.conftest import LogLines


def value(name: str, **labels: str) -> float:
    """A sample's current value, 0 when the series does not exist yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Sample values now, to compare with later: metrics are process-wide, tests compare differences."""

    def __init__(self, *series: tuple[str, dict[str, str]]) -> None:
        self._before = {(name, tuple(sorted(labels.items()))): value(name, **labels) for name, labels in series}

    def __call__(self, name: str, **labels: str) -> float:
        return value(name, **labels) - self._before[(name, tuple(sorted(labels.items())))]


def _call(
    tool: str, *, until: str | None = None, **args: Any
) -> Callable[[list[ModelMessage], AgentInfo], ModelResponse]:
    """A model that calls `tool`, then answers 'done' once a tool result (equal to `until`, if given) came back."""

    def model(messages: list[ModelMessage], _: AgentInfo) -> ModelResponse:
        returns = [p for p in messages[-1].parts if getattr(p, "part_kind", "") == "tool-return"]
        if returns and (until is None or any(getattr(p, "content", None) == until for p in returns)):
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(parts=[ToolCallPart(tool, args)])

    return model


def _agent(model: Callable[..., Any], name: str = "calc") -> Agent[None, str]:
    agent: Agent[None, str] = Agent(FunctionModel(model, model_name="fn"), name=name)
    seen: dict[str, int] = {"flaky": 0}

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    @agent.tool_plain
    def flaky() -> str:
        """Asks the model to retry once, then works."""
        seen["flaky"] += 1
        if seen["flaky"] == 1:
            raise ModelRetry("try again")
        return "ok"

    @agent.tool_plain
    def context() -> str:
        """Reports the log context bound while the tool runs."""
        return ",".join(f"{k}={v}" for k, v in sorted(structlog.contextvars.get_contextvars().items()))

    @agent.tool_plain
    def explode() -> str:
        """Always fails."""
        raise RuntimeError("broken tool")

    return agent


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(sqlite_url)
    yield opened
    await opened.close()


def _runtime(store: SQLStore, agent: Agent[Any, Any], *hooks: Hook, **cfg: Any) -> tuple[Runtime, Telemetry]:
    settings = Settings(_env_file=None, **cfg)  # type: ignore[call-arg]
    telemetry = Telemetry(settings)
    return Runtime(settings, {"calc": agent}, store, [telemetry, *hooks]), telemetry


async def test_a_run_with_a_tool_counts_the_run_its_requests_tokens_and_tool_call(store: SQLStore) -> None:
    """Counters move by exactly what the run did; histograms get one observation; the gauge ends at 0."""
    runtime, telemetry = _runtime(store, _agent(_call("add", a=1, b=2)))
    delta = Delta(
        ("agentkeep_runs_total", {"agent": "calc", "status": "succeeded"}),
        ("agentkeep_model_requests_total", {"model": "fn", "outcome": "ok"}),
        ("agentkeep_tokens_total", {"model": "fn", "direction": "input"}),
        ("agentkeep_tokens_total", {"model": "fn", "direction": "output"}),
        ("agentkeep_tool_calls_total", {"tool": "add", "outcome": "ok"}),
        ("agentkeep_run_duration_seconds_count", {"agent": "calc"}),
        ("agentkeep_run_iterations_sum", {"agent": "calc"}),
        ("agentkeep_model_request_duration_seconds_count", {"model": "fn"}),
        ("agentkeep_tool_call_duration_seconds_count", {"tool": "add"}),
    )
    result = await runtime.run(RunRequest(message="1+2?"))
    usage = result["usage"]
    assert delta("agentkeep_runs_total", agent="calc", status="succeeded") == 1
    assert delta("agentkeep_model_requests_total", model="fn", outcome="ok") == 2
    assert delta("agentkeep_tokens_total", model="fn", direction="input") == usage["input_tokens"] > 0
    assert delta("agentkeep_tokens_total", model="fn", direction="output") == usage["output_tokens"] > 0
    assert delta("agentkeep_tool_calls_total", tool="add", outcome="ok") == 1
    assert delta("agentkeep_run_duration_seconds_count", agent="calc") == 1
    assert delta("agentkeep_run_iterations_sum", agent="calc") == 2
    assert delta("agentkeep_model_request_duration_seconds_count", model="fn") == 2
    assert delta("agentkeep_tool_call_duration_seconds_count", tool="add") == 1
    assert value("agentkeep_active_runs") == 0
    snap = telemetry.stats.snapshot()
    assert snap["total_requests"] == 1 and snap["total_tool_calls"] == 1 and snap["avg_iterations_per_request"] == 2
    assert snap["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


async def test_tool_outcomes_distinguish_a_retry_from_a_failure(store: SQLStore) -> None:
    """ModelRetry is `retry` (the run goes on); an exception is `error` and fails the run as tool_error."""
    runtime, telemetry = _runtime(store, _agent(_call("flaky", until="ok")))
    delta = Delta(
        ("agentkeep_tool_calls_total", {"tool": "flaky", "outcome": "retry"}),
        ("agentkeep_tool_calls_total", {"tool": "flaky", "outcome": "ok"}),
        ("agentkeep_tool_calls_total", {"tool": "explode", "outcome": "error"}),
        ("agentkeep_runs_total", {"agent": "calc", "status": "failed"}),
    )
    assert (await runtime.run(RunRequest(message="go")))["status"] == "succeeded"
    failing, _ = _runtime(store, _agent(_call("explode")))
    failing.hooks[0] = telemetry
    with pytest.raises(RunFailed) as failed:
        await failing.run(RunRequest(message="go"))
    assert failed.value.error_type == "tool_error"
    assert delta("agentkeep_tool_calls_total", tool="flaky", outcome="retry") == 1
    assert delta("agentkeep_tool_calls_total", tool="flaky", outcome="ok") == 1
    assert delta("agentkeep_tool_calls_total", tool="explode", outcome="error") == 1
    assert delta("agentkeep_runs_total", agent="calc", status="failed") == 1
    snap = telemetry.stats.snapshot()
    assert snap["total_requests"] == 2 and snap["total_errors"] == 1 and snap["error_rate"] == 0.5


async def test_a_rate_limited_model_request_is_counted_with_its_outcome(store: SQLStore) -> None:
    """A provider's 429 is outcome `rate_limited`, timed like any request; the run fails as model_error."""

    def limited(_: list[ModelMessage], __: AgentInfo) -> ModelResponse:
        raise ModelHTTPError(429, "fn", {"error": "slow down"})

    runtime, _ = _runtime(store, _agent(limited))
    delta = Delta(
        ("agentkeep_model_requests_total", {"model": "fn", "outcome": "rate_limited"}),
        ("agentkeep_model_request_duration_seconds_count", {"model": "fn"}),
    )
    with pytest.raises(RunFailed) as failed:
        await runtime.run(RunRequest(message="go"))
    assert failed.value.error_type == "model_error"
    assert delta("agentkeep_model_requests_total", model="fn", outcome="rate_limited") == 1
    assert delta("agentkeep_model_request_duration_seconds_count", model="fn") == 1


async def test_a_request_an_inner_hook_refuses_is_counted_as_refused_and_not_timed(store: SQLStore) -> None:
    """Telemetry is outermost: it sees a breaker's refusal, which never reached the model."""

    class OpenBreaker(Hook):
        async def wrap_model_request(self, run: RunState, call: ModelCall, proceed: ModelProceed) -> ModelResponse:
            raise CircuitOpen("open", retry_after=5)

    runtime, _ = _runtime(store, _agent(_call("add", a=1, b=1)), OpenBreaker())
    delta = Delta(
        ("agentkeep_model_requests_total", {"model": "fn", "outcome": "refused"}),
        ("agentkeep_model_request_duration_seconds_count", {"model": "fn"}),
    )
    with pytest.raises(RunFailed):
        await runtime.run(RunRequest(message="go"))
    assert delta("agentkeep_model_requests_total", model="fn", outcome="refused") == 1
    assert delta("agentkeep_model_request_duration_seconds_count", model="fn") == 0


async def test_the_run_ids_are_bound_while_the_run_executes_and_unbound_after(store: SQLStore) -> None:
    """Anything logged inside a run (here: from a tool) carries its ids; nothing leaks past its end."""
    runtime, _ = _runtime(store, _agent(_call("context")))
    result = await runtime.run(RunRequest(message="go", session_id="s-ctx"))
    record = await store.get_run("anonymous", result["run_id"])
    assert record is not None and record.messages_json is not None
    bound = f"agent=calc,run_id={result['run_id']},session_id=s-ctx,user_id=anonymous"
    assert bound.encode() in record.messages_json
    assert structlog.contextvars.get_contextvars() == {}


async def test_the_active_runs_gauge_counts_runs_in_progress(store: SQLStore) -> None:
    """agentkeep_active_runs is 1 while a run waits in its tool, and 0 once it ends."""
    entered, release = asyncio.Event(), asyncio.Event()
    agent = _agent(_call("wait"))

    @agent.tool_plain
    async def wait() -> str:
        """Blocks until released."""
        entered.set()
        await release.wait()
        return "released"

    runtime, telemetry = _runtime(store, agent)
    task = asyncio.create_task(runtime.run(RunRequest(message="go")))
    await asyncio.wait_for(entered.wait(), 10)
    assert value("agentkeep_active_runs") == 1 and telemetry.stats.snapshot()["active_runs"] == 1
    release.set()
    await task
    assert value("agentkeep_active_runs") == 0 and telemetry.stats.snapshot()["active_runs"] == 0


async def test_each_run_logs_start_requests_tools_and_end_with_its_ids(
    store: SQLStore, json_logs: Callable[..., LogLines]
) -> None:
    """run.started, 2 model.request, 1 tool.call, run.finished: each with the run's ids and measurements."""
    lines = json_logs()
    runtime, _ = _runtime(store, _agent(_call("add", a=1, b=2)))
    result = await runtime.run(RunRequest(message="secret diary text", session_id="s-log"))
    events = [e for e in lines() if e.get("component") == "runtime"]
    assert [e["event"] for e in events] == [
        "run.started",
        "model.request",
        "tool.call",
        "model.request",
        "run.finished",
    ]
    for event in events:
        assert (event["run_id"], event["session_id"], event["user_id"], event["agent"]) == (
            result["run_id"],
            "s-log",
            "anonymous",
            "calc",
        )
    request, tool, end = events[1], events[2], events[-1]
    assert request["model"] == "fn" and request["outcome"] == "ok" and request["latency_ms"] >= 0
    assert request["input_tokens"] > 0
    assert tool["tool"] == "add" and tool["outcome"] == "ok"
    assert end["status"] == "succeeded" and end["iterations"] == 2 and end["tool_calls"] == 1
    assert end["duration_ms"] > 0 and "cost_usd" in end
    assert "secret diary text" not in str(lines())


async def test_a_failed_run_logs_an_error_with_the_exception_and_debug_shows_text(
    store: SQLStore, json_logs: Callable[..., LogLines]
) -> None:
    """At debug, prompts and tool args appear; a failed run's end event is an error with a stack."""
    lines = json_logs(log_level="debug")
    runtime, _ = _runtime(store, _agent(_call("explode")), log_level="debug")
    with pytest.raises(RunFailed):
        await runtime.run(RunRequest(message="please explode"))
    events = {e["event"]: e for e in lines() if e.get("component") == "runtime"}
    assert events["model.text"]["prompt"] == "please explode"
    assert events["tool.args"]["tool"] == "explode"
    end = events["run.finished"]
    assert end["level"] == "error" and end["status"] == "failed" and end["error_type"] == "tool_error"
    assert end["exc_type"] == "RuntimeError"
    assert "RuntimeError: broken tool" in end["exception"] and "ToolError" in end["exception"]
    assert events["tool.call"]["outcome"] == "error" and events["tool.call"]["level"] == "warning"
