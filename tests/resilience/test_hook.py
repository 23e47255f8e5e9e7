"""Breakers, retries, deadlines and caps around real runs: the runtime, a SQLite store, FunctionModel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai import exceptions as pai
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkeep.config import Settings
from agentkeep.errors import CircuitOpen, RunFailed
from agentkeep.failures import classify
from agentkeep.resilience import CircuitBreaker, CircuitState, MemoryBreakerBackend, Resilience, RetryPolicy
from agentkeep.runtime import RunEvent, RunRequest, Runtime
from agentkeep.stores import RunStatus, open_store
from agentkeep.stores.sql import SQLStore
from tests.resilience.conftest import eventually

MODEL = "flaky"


@dataclass
class Script:
    """A model whose n-th call does `steps[n]` (the last step repeats): an exception, a delay, or text."""

    steps: list[Any]
    calls: int = 0
    settings_seen: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        self.settings_seen.append(dict(info.model_settings or {}))
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, float):
            await asyncio.sleep(step)
            return ModelResponse(parts=[TextPart("slow answer")])
        if step == "tool":
            return ModelResponse(parts=[ToolCallPart("noop", {})])
        turns = sum(1 for m in messages for p in m.parts if getattr(p, "part_kind", "") == "user-prompt")
        return ModelResponse(parts=[TextPart(f"{step} ({turns} user turns)")])


def http(status: int, retry_after: float | None = None) -> pai.ModelHTTPError:
    error = pai.ModelHTTPError(status, MODEL, body="provider said no")
    error.retry_after = retry_after
    return error


@dataclass
class Harness:
    runtime: Runtime
    resilience: Resilience
    slept: list[float]
    retried: list[str]

    async def run(self, message: str = "hi", session_id: str | None = None) -> dict[str, Any]:
        return await self.runtime.run(RunRequest(message=message, session_id=session_id))

    async def failure(self, session_id: str | None = None) -> RunFailed:
        """How the run failed, whether refused at admission (CircuitOpen) or after it started."""
        with pytest.raises((RunFailed, CircuitOpen)) as caught:
            await self.run(session_id=session_id)
        return classify(caught.value)


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(sqlite_url)
    yield opened
    await opened.close()


@pytest.fixture
def harness(store: SQLStore) -> Callable[..., Harness]:
    def build(model: Any, *, failures: int = 3, reset_s: float = 60.0, request_timeout_s: float = 30.0, **cfg: Any):
        settings = Settings(_env_file=None, **cfg)  # type: ignore[call-arg]
        agent: Agent[None, str] = Agent(model, name="a")

        @agent.tool_plain
        def noop() -> str:
            """Does nothing."""
            return "ok"

        slept: list[float] = []
        retried: list[str] = []

        async def record_sleep(seconds: float) -> None:
            slept.append(seconds)
            await asyncio.sleep(0)

        resilience = Resilience(
            CircuitBreaker(MemoryBreakerBackend(failures, reset_s)),
            run_timeout_s=settings.run_timeout_s,
            request_timeout_s=request_timeout_s,
            policy=RetryPolicy(rand=lambda: 0.5),
            on_retry=retried.append,
            sleep=record_sleep,
        )
        runtime = Runtime(settings, {"a": agent}, store, [resilience])
        return Harness(runtime, resilience, slept, retried)

    return build


async def test_a_transient_failure_is_retried_and_the_run_succeeds(harness: Callable[..., Harness]) -> None:
    """Two 503s then an answer: one run, three attempts, two backoffs, each retry counted."""
    script = Script([http(503), http(503), "fine"])
    h = harness(FunctionModel(script, model_name=MODEL))
    result = await h.run()
    assert result["output"] == "fine (1 user turns)"
    assert script.calls == 3
    assert h.slept == [pytest.approx(0.25), pytest.approx(0.5)]  # full jitter at rand=0.5: base·2^(n-1)/2
    assert h.retried == [MODEL, MODEL]


async def test_the_provider_sdk_does_not_retry_on_its_own(harness: Callable[..., Harness]) -> None:
    """Every attempt goes out with max_retries=0, so SDK retries cannot multiply ours."""
    script = Script([http(502), "fine"])
    await harness(FunctionModel(script, model_name=MODEL)).run()
    assert [s.get("max_retries") for s in script.settings_seen] == [0, 0]


async def test_retries_stop_after_three_attempts(harness: Callable[..., Harness]) -> None:
    """A provider that stays down: three attempts, then the run fails `model_error`."""
    script = Script([http(503)])
    failure = await harness(FunctionModel(script, model_name=MODEL), failures=10).failure()
    assert failure.error_type == "model_error"
    assert script.calls == 3


async def test_an_error_the_request_caused_is_neither_retried_nor_a_breaker_failure(
    harness: Callable[..., Harness],
) -> None:
    """A 400 is sent once and leaves the breaker closed: the provider is up, the request was wrong."""
    script = Script([http(400)])
    h = harness(FunctionModel(script, model_name=MODEL), failures=1)
    assert (await h.failure()).error_type == "model_error"
    assert script.calls == 1
    assert await h.resilience.breaker.state(MODEL) is CircuitState.CLOSED


async def test_an_open_breaker_refuses_new_runs_at_once_without_calling_the_model(
    harness: Callable[..., Harness], store: SQLStore
) -> None:
    """After N failures the next run is refused at admission: `circuit_open` (503, Retry-After), the
    model untouched, nothing recorded, no slot of the concurrency cap kept."""
    script = Script([http(503)])
    h = harness(FunctionModel(script, model_name=MODEL), failures=3, reset_s=60)
    assert (await h.failure()).error_type == "model_error"  # three attempts, three failures: it opens
    assert await h.resilience.breaker.state(MODEL) is CircuitState.OPEN
    calls = script.calls
    with pytest.raises(CircuitOpen) as caught:
        await h.runtime.prepare(RunRequest(message="hi", session_id="s1"))
    assert caught.value.http_status == 503
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 60
    assert script.calls == calls
    assert h.runtime.active_runs == 0
    assert await store.get_session("anonymous", "s1") is None


async def test_a_run_admitted_before_the_breaker_opened_fails_circuit_open_and_is_recorded(
    harness: Callable[..., Harness], store: SQLStore
) -> None:
    """A run recorded while the breaker was closed (a queued run) and executed once it is open fails
    `circuit_open` before any request; the failure is on its record and its session is free again."""
    script = Script(["fine"])
    h = harness(FunctionModel(script, model_name=MODEL), failures=1, reset_s=0.5)
    prepared = await h.runtime.prepare(RunRequest(message="hi", session_id="s1"))
    await h.resilience.breaker.failure(MODEL)
    with pytest.raises(RunFailed) as caught:
        await h.runtime.execute(prepared)
    assert caught.value.error_type == "circuit_open" and caught.value.http_status == 503
    assert script.calls == 0
    record = await store.get_run("anonymous", prepared.record.run_id)
    assert record is not None and record.status is RunStatus.FAILED and record.error_type == "circuit_open"

    async def trial_allowed() -> bool:
        return (await h.resilience.breaker.backend.peek(MODEL)).allowed

    await eventually(trial_allowed)
    assert (await h.run(session_id="s1"))["output"] == "fine (1 user turns)"  # the session is free


async def test_half_open_lets_one_trial_through_and_its_success_closes_the_breaker(
    harness: Callable[..., Harness],
) -> None:
    """open → (reset) → one trial reaches the model → success → closed, and runs flow again."""
    script = Script([http(503), http(503), "back"])
    h = harness(FunctionModel(script, model_name=MODEL), failures=2, reset_s=0.2)
    # Attempt 1 fails, attempt 2 fails and opens the breaker, attempt 3 is refused before it is sent.
    assert (await h.failure()).error_type == "circuit_open"
    assert script.calls == 2

    async def trial_allowed() -> bool:
        return (await h.resilience.breaker.backend.peek(MODEL)).allowed

    await eventually(trial_allowed)
    assert (await h.run())["output"] == "back (1 user turns)"
    assert script.calls == 3
    assert await h.resilience.breaker.state(MODEL) is CircuitState.CLOSED


async def test_a_fallback_model_skips_a_model_whose_breaker_is_open(harness: Callable[..., Harness]) -> None:
    """FallbackModel(primary, backup) with primary's breaker open: backup answers, primary is never called."""
    primary, backup = Script(["primary"]), Script(["backup"])
    model = FallbackModel(FunctionModel(primary, model_name="primary"), FunctionModel(backup, model_name="backup"))
    h = harness(model, failures=1)
    await h.resilience.breaker.failure("primary")
    assert (await h.run())["output"] == "backup (1 user turns)"
    assert (primary.calls, backup.calls) == (0, 1)


async def test_a_fallback_model_with_every_breaker_open_fails_circuit_open(harness: Callable[..., Harness]) -> None:
    """All models of the chain refused by their breakers: `circuit_open`, nothing sent."""
    primary, backup = Script(["primary"]), Script(["backup"])
    model = FallbackModel(FunctionModel(primary, model_name="primary"), FunctionModel(backup, model_name="backup"))
    h = harness(model, failures=1)
    await h.resilience.breaker.failure("primary")
    await h.resilience.breaker.failure("backup")
    assert (await h.failure()).error_type == "circuit_open"
    assert primary.calls == backup.calls == 0


async def test_a_429_retry_after_is_honoured(harness: Callable[..., Harness]) -> None:
    """The wait before the retry is at least what the provider's Retry-After asked for."""
    script = Script([http(429, retry_after=2.0), "fine"])
    h = harness(FunctionModel(script, model_name=MODEL))
    await h.run()
    assert h.slept == [2.0]
    assert script.calls == 2


async def test_a_429_counts_against_the_breaker_only_when_retries_run_out(harness: Callable[..., Harness]) -> None:
    """Three 429s are one breaker failure (not three): with a threshold of 2 it takes two such runs."""
    script = Script([http(429, retry_after=0.01)])
    h = harness(FunctionModel(script, model_name=MODEL), failures=2)
    await h.failure()
    assert script.calls == 3
    assert await h.resilience.breaker.state(MODEL) is CircuitState.CLOSED
    await h.failure()
    assert await h.resilience.breaker.state(MODEL) is CircuitState.OPEN


async def test_no_retry_waits_past_the_run_deadline(harness: Callable[..., Harness]) -> None:
    """Retry-After longer than what is left of the run: the run fails now, without waiting."""
    script = Script([http(429, retry_after=30.0), "fine"])
    h = harness(FunctionModel(script, model_name=MODEL), run_timeout_s=5)
    assert (await h.failure()).error_type == "model_error"
    assert h.slept == []
    assert script.calls == 1


async def test_a_hung_attempt_times_out_and_is_retried(harness: Callable[..., Harness]) -> None:
    """An attempt over the per-request deadline is cut off and counts as a transient failure."""
    script = Script([30.0, "fine"])
    h = harness(FunctionModel(script, model_name=MODEL), request_timeout_s=0.2)
    assert (await h.run())["output"] == "fine (1 user turns)"
    assert script.calls == 2


async def test_a_model_that_always_hangs_fails_run_timeout_and_frees_the_session(
    harness: Callable[..., Harness],
) -> None:
    """Every attempt times out: the run fails `run_timeout`; the session takes the next run, which
    sees only its own turn (nothing of the failed run was appended)."""
    script = Script([30.0, 30.0, 30.0, "after"])
    h = harness(FunctionModel(script, model_name=MODEL), request_timeout_s=0.1, failures=10)
    assert (await h.failure(session_id="s1")).error_type == "run_timeout"
    assert (await h.run(session_id="s1"))["output"] == "after (1 user turns)"


async def test_the_run_deadline_fails_run_timeout_and_frees_the_session(harness: Callable[..., Harness]) -> None:
    """AGENTKEEP_RUN_TIMEOUT_S cuts a run whose model is slower than the whole run may take."""
    script = Script([30.0, "after"])
    h = harness(FunctionModel(script, model_name=MODEL), run_timeout_s=0.3)
    failure = await h.failure(session_id="s1")
    assert failure.error_type == "run_timeout"
    assert h.runtime.active_runs == 0
    assert (await h.run(session_id="s1"))["output"] == "after (1 user turns)"


async def test_the_cap_on_model_requests_fails_iteration_limit(harness: Callable[..., Harness]) -> None:
    """A model that calls tools for ever stops at AGENTKEEP_MAX_MODEL_REQUESTS with `iteration_limit`."""
    script = Script(["tool", "tool", "tool", "tool", "answer"])
    h = harness(FunctionModel(script, model_name=MODEL), max_model_requests=3)
    assert (await h.failure(session_id="s1")).error_type == "iteration_limit"
    assert script.calls == 3
    assert (await h.run(session_id="s1"))["output"] == "answer (1 user turns)"


async def test_a_streamed_run_retries_a_stream_that_failed_to_open(harness: Callable[..., Harness]) -> None:
    """The stream's open fails with a 503, the retry streams the answer; the client sees one answer."""
    opens = 0

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        nonlocal opens
        opens += 1
        if opens == 1:
            raise http(503)
        for chunk in ("str", "eam", "ed"):
            yield chunk

    h = harness(FunctionModel(stream_function=stream, model_name=MODEL))
    events: list[RunEvent] = []

    async def emit(event: RunEvent) -> None:
        events.append(event)

    prepared = await h.runtime.prepare(RunRequest(message="hi"))
    result = await h.runtime.execute(prepared, emit)
    assert result["output"] == "streamed"
    assert opens == 2
    text = "".join(e.data["text"] for e in events if e.name == "text.delta")
    assert text == "streamed"
    assert [e.name for e in events].count("run.completed") == 1
