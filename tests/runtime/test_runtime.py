"""The run pipeline, in process, with Pydantic AI's FunctionModel at the model boundary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from agentkeep.config import Settings
from agentkeep.errors import InvalidRequest, NotFound, Overloaded, PayloadTooLarge, RunFailed, SessionBusy
from agentkeep.hooks import Hook, ModelCall, ModelProceed, RunOutcome, RunState, ToolCall, ToolProceed
from agentkeep.runtime import RunEvent, RunRequest, Runtime, clean_message
from agentkeep.stores import RunStatus, open_store
from agentkeep.stores.sql import SQLStore


def _tool_then_answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call `add` once, then answer with what it returned and how many user turns it has seen."""
    last = messages[-1]
    if any(getattr(p, "part_kind", "") == "tool-return" for p in last.parts):
        turns = sum(1 for m in messages for p in m.parts if getattr(p, "part_kind", "") == "user-prompt")
        return ModelResponse(parts=[TextPart(f"done after {turns} user turns")])
    return ModelResponse(parts=[ToolCallPart("add", {"a": 2, "b": 3})])


def _streamed(fn: Any) -> Any:
    """The same behaviour as `fn`, streamed: text in small chunks, tool calls as deltas."""

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        response = fn(messages, info)
        for index, part in enumerate(response.parts):
            if isinstance(part, TextPart):
                for start in range(0, len(part.content), 4):
                    yield part.content[start : start + 4]
            elif isinstance(part, ToolCallPart):
                yield {index: DeltaToolCall(name=part.tool_name, json_args=part.args_as_json_str())}

    return stream


def _agent(fn: Any = _tool_then_answer) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(FunctionModel(fn, stream_function=_streamed(fn)), name="calc")

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @agent.tool_plain
    def explode() -> str:
        """Always fails."""
        raise ValueError("boom")

    return agent


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(sqlite_url)
    yield opened
    await opened.close()


def _runtime(
    store: SQLStore, agent: Agent[Any, Any] | None = None, hooks: list[Hook] | None = None, **cfg: Any
) -> Runtime:
    settings = Settings(_env_file=None, **cfg)  # type: ignore[call-arg]
    return Runtime(settings, {"calc": agent or _agent()}, store, hooks or [])


async def test_a_run_returns_the_result_and_the_next_run_continues_the_session(store: SQLStore) -> None:
    """The second run on a session sees the first run's messages: history is loaded and saved."""
    runtime = _runtime(store)
    first = await runtime.run(RunRequest(message="hi", session_id="s1"))
    assert first["status"] == "succeeded"
    assert first["output"] == "done after 1 user turns"
    assert first["tools_used"] == ["add"]
    assert first["usage"]["requests"] == 2 and first["usage"]["tool_calls"] == 1
    second = await runtime.run(RunRequest(message="again", session_id="s1"))
    assert second["output"] == "done after 2 user turns"


async def test_a_failing_model_fails_the_run_and_leaves_the_session_unchanged(store: SQLStore) -> None:
    """model_error; the run record keeps the error; the session history does not grow."""
    calls = 0

    def flaky(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal calls
        calls += 1
        if calls > 2:
            from pydantic_ai.exceptions import ModelHTTPError

            raise ModelHTTPError(500, "mock", body="secret provider detail")
        return _tool_then_answer(messages, info)

    runtime = _runtime(store, _agent(flaky))
    await runtime.run(RunRequest(message="one", session_id="s2"))
    before = await store.get_session("anonymous", "s2")
    with pytest.raises(RunFailed) as failed:
        await runtime.run(RunRequest(message="two", session_id="s2"))
    assert failed.value.error_type == "model_error"
    assert "secret provider detail" not in failed.value.message
    after = await store.get_session("anonymous", "s2")
    assert before is not None and after is not None
    assert after.history_chunks == before.history_chunks
    # the session is free again
    assert runtime.active_runs == 0


async def test_a_tool_that_raises_fails_the_run_with_tool_error_and_keeps_partial_messages(store: SQLStore) -> None:
    """tool_error names the tool; the failed run's record holds what happened before the failure."""

    def call_explode(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("explode", {})])

    runtime = _runtime(store, _agent(call_explode))
    with pytest.raises(RunFailed) as failed:
        await runtime.run(RunRequest(message="go", session_id="s3"))
    assert failed.value.error_type == "tool_error"
    assert "explode" in failed.value.message
    session = await store.get_session("anonymous", "s3")
    assert session is not None and session.history_chunks == []


async def test_too_many_model_requests_fail_with_iteration_limit(store: SQLStore) -> None:
    """A model that never stops calling tools hits the per-run cap on model requests."""

    def forever(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("add", {"a": 1, "b": 1})])

    runtime = _runtime(store, _agent(forever), max_model_requests=3)
    with pytest.raises(RunFailed) as failed:
        await runtime.run(RunRequest(message="loop"))
    assert failed.value.error_type == "iteration_limit"


async def test_a_run_past_its_deadline_fails_with_run_timeout(store: SQLStore) -> None:
    """AGENTKEEP_RUN_TIMEOUT_S bounds the whole run; the session is released afterwards."""

    async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(5)
        return ModelResponse(parts=[TextPart("late")])

    runtime = _runtime(store, _agent(slow), run_timeout_s=0.2)
    with pytest.raises(RunFailed) as failed:
        await runtime.run(RunRequest(message="slow", session_id="s4"))
    assert failed.value.error_type == "run_timeout"
    record_free = await _runtime(store).run(RunRequest(message="next", session_id="s4"))
    assert record_free["status"] == "succeeded"


async def test_hooks_wrap_every_model_request_and_tool_call_in_order(store: SQLStore) -> None:
    """The first hook is the outermost; every hook sees each request and call once."""
    seen: list[str] = []

    class Recorder(Hook):
        def __init__(self, name: str) -> None:
            self.name = name

        async def before_run(self, run: RunState) -> None:
            seen.append(f"{self.name}:start")

        async def after_run(self, run: RunState, outcome: RunOutcome) -> None:
            seen.append(f"{self.name}:end:{outcome.status}")

        async def wrap_model_request(self, run: RunState, call: ModelCall, proceed: ModelProceed) -> ModelResponse:
            seen.append(f"{self.name}:model>")
            response = await proceed()
            seen.append(f"{self.name}:model<")
            return response

        async def wrap_tool_call(self, run: RunState, call: ToolCall, proceed: ToolProceed) -> Any:
            seen.append(f"{self.name}:tool:{call.name}")
            return await proceed()

    runtime = _runtime(store, hooks=[Recorder("a"), Recorder("b")])
    await runtime.run(RunRequest(message="x"))
    assert seen == [
        "a:start", "b:start",
        "a:model>", "b:model>", "b:model<", "a:model<",
        "a:tool:add", "b:tool:add",
        "a:model>", "b:model>", "b:model<", "a:model<",
        "a:end:succeeded", "b:end:succeeded",
    ]  # fmt: skip


async def test_a_hook_can_refuse_a_run_before_any_model_request(store: SQLStore) -> None:
    """An AgentkeepError from before_run fails the run with that error's type."""
    from agentkeep.errors import BudgetExceeded

    class Refuse(Hook):
        async def before_run(self, run: RunState) -> None:
            raise BudgetExceeded("no money")

    runtime = _runtime(store, hooks=[Refuse()])
    with pytest.raises(RunFailed) as failed:
        await runtime.run(RunRequest(message="x"))
    assert failed.value.error_type == "budget_exceeded"


async def test_streaming_emits_the_contract_events_in_order(store: SQLStore) -> None:
    """run.started, tool.call, tool.result (same call id, ok, the content the model saw), text.delta…,
    then run.completed with the RunResult."""
    events: list[RunEvent] = []

    async def emit(event: RunEvent) -> None:
        events.append(event)

    runtime = _runtime(store)
    prepared = await runtime.prepare(RunRequest(message="hi"))
    result = await runtime.execute(prepared, emit)
    names = [e.name for e in events]
    assert names[0] == "run.started" and names[-1] == "run.completed"
    assert names.index("tool.call") < names.index("tool.result") < names.index("text.delta")
    call, result_event = events[names.index("tool.call")].data, events[names.index("tool.result")].data
    assert call == {"tool_call_id": call["tool_call_id"], "name": "add", "args": {"a": 2, "b": 3}}
    assert result_event == {"tool_call_id": call["tool_call_id"], "name": "add", "ok": True, "content": "5"}
    assert "".join(e.data["text"] for e in events if e.name == "text.delta") == result["output"]
    assert events[-1].data == result


async def test_admission_checks_agent_session_id_and_capacity(store: SQLStore) -> None:
    """Unknown agent → 404; a bad session id → 400; at the cap → 503 overloaded; a busy session → 409."""
    runtime = _runtime(store, max_concurrent_runs=2)
    with pytest.raises(NotFound):
        await runtime.prepare(RunRequest(message="x", agent="nope"))
    with pytest.raises(InvalidRequest):
        await runtime.prepare(RunRequest(message="x", session_id="bad id!"))
    prepared = await runtime.prepare(RunRequest(message="x", session_id="busy"))  # holds one of two slots
    with pytest.raises(SessionBusy):
        await runtime.prepare(RunRequest(message="y", session_id="busy"))
    assert runtime.active_runs == 1  # the refused run gave its slot back
    runtime.active.enter()  # another run takes the second slot
    with pytest.raises(Overloaded):
        await runtime.prepare(RunRequest(message="z"))
    runtime.active.leave()
    await runtime.execute(prepared)
    assert runtime.active_runs == 0
    record = await store.get_run("anonymous", prepared.record.run_id)
    assert record is not None and record.status is RunStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("  hi\x00 there\x07 ", "hi there"), ("a\nb\tc", "a\nb\tc"), ("\x1b[31mred", "[31mred")],
)
def test_messages_lose_control_characters_but_keep_newlines_and_tabs(raw: str, expected: str) -> None:
    """Control characters other than \\n and \\t are removed, then the text is trimmed."""
    assert clean_message(raw, 100) == expected


def test_blank_and_oversized_messages_are_refused() -> None:
    """Blank → 400 invalid_request; over the limit → 413 payload_too_large."""
    with pytest.raises(InvalidRequest):
        clean_message(" \x00\n ", 100)
    with pytest.raises(PayloadTooLarge):
        clean_message("x" * 101, 100)


async def test_a_session_left_with_an_unanswered_tool_call_takes_the_next_message(store: SQLStore) -> None:
    """A history that ends with tool calls nobody answered (what an older agentkeep stored for a tool
    needing approval) no longer refuses every new prompt: the calls are closed as interrupted first."""
    from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelRequest, UserPromptPart

    broken = [ModelRequest(parts=[UserPromptPart("delete it")]), ModelResponse(parts=[ToolCallPart("add", {"a": 1})])]
    runtime = _runtime(store)
    prepared = await runtime.prepare(RunRequest(message="old turn", session_id="broken"))
    prepared.record.status = RunStatus.SUCCEEDED
    assert await store.finish_run(prepared.record, append_to_session=ModelMessagesTypeAdapter.dump_json(broken))
    runtime.active.leave()  # the slot `prepare` took for the run that was recorded by hand

    result = await runtime.run(RunRequest(message="and now?", session_id="broken"))
    assert result["status"] == "succeeded" and result["output"] == "done after 2 user turns"


async def test_a_sibling_call_replayed_from_a_checkpoint_is_kept_for_the_resume(store: SQLStore) -> None:
    """An agent with an output validator pauses through agentkeep's capability: a sibling tool call that
    a hook answers without running it (as a durable run's checkpoint does) is still kept for the resume,
    and the model gets its result after the approval."""
    from pydantic_ai.messages import ToolReturnPart

    from agentkeep.approvals import Approvals
    from agentkeep.deferred import Pending

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if returns:
            return ModelResponse(parts=[TextPart(" ".join(f"{p.tool_name}={p.content}" for p in returns))])
        return ModelResponse(
            parts=[ToolCallPart("add", {"a": 2, "b": 3}, "c_add"), ToolCallPart("erase", {}, "c_erase")]
        )

    agent: Agent[None, str] = Agent(FunctionModel(model))
    erased: list[str] = []

    @agent.output_validator
    def keep(answer: str) -> str:
        return answer

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        raise AssertionError("answered by the checkpoint, never run")

    @agent.tool_plain(requires_approval=True)
    def erase() -> str:
        erased.append("erased")
        return "gone"

    class Checkpoint(Hook):
        async def wrap_tool_call(self, run: RunState, call: ToolCall, proceed: ToolProceed) -> Any:
            return 5 if call.name == "add" else await proceed()

    runtime = _runtime(store, agent, hooks=[Checkpoint()])
    waiting = await runtime.run(RunRequest(message="add, then erase"))
    assert waiting["status"] == "waiting_approval" and erased == []
    record = await store.get_run(None, waiting["run_id"])
    assert record is not None and Pending.load(record.deferred_json or b"").settled == {"c_add": 5}
    resumed = await runtime.execute(
        await Approvals(runtime).prepare_resume(record, {"c_erase": True}, {}, background=False)
    )
    assert resumed["status"] == "succeeded" and resumed["output"] == "add=5 erase=gone" and erased == ["erased"]
