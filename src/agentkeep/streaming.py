"""A streamed run: the agent driven node by node, its progress turned into the contract's run events.

    model.retry   {reason}                          a model request that answers a discarded
                                                    response: an output validator's or a tool's
                                                    `ModelRetry`, tool arguments that failed
                                                    validation; what was streamed since the last
                                                    model request is void
    text.delta    {text}                            text as it streams
    output.delta  {output}                          the structured output so far, validated as
                                                    partial (debounced; an unchanged one is skipped)
    tool.call     {tool_call_id, name, args}        a tool called (also one that waits for a decision)
    tool.result   {tool_call_id, name, ok, content} its result: `ok` when it succeeded, `content`
                                                    what the model sees, cut to 2,000 characters

`run_stream_events` validates no partial output, so the run is driven with `Agent.iter`, each
model request streamed with `node.stream` (an `AgentStream`, which validates partial output) and
each tool batch with its own stream. Events of the run's own start and end (`run.started`,
`run.completed`, `run.waiting`, `run.failed`) are the runtime's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic_ai import Agent, DeferredToolRequests
from pydantic_ai.messages import (
    FinalResultEvent,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelRequest,
    PartDeltaEvent,
    PartStartEvent,
    RetryFeedbackPart,
    TextPart,
    TextPartDelta,
    ToolReturnPart,
)
from pydantic_ai.run import AgentRunResult
from pydantic_core import to_jsonable_python

__all__ = ["CONTENT_CHARS", "EventSink", "RunEvent", "retry_reason", "stream_agent"]

CONTENT_CHARS = 2000  # of a tool result's content, in `tool.result`
_REASON_CHARS = 500
_PARTIAL_EVERY_S = 0.05  # validating a partial output re-parses the whole response: not on every delta


@dataclass
class RunEvent:
    """One streamed event: its name (`text.delta`, `run.completed`, …) and its data."""

    name: str
    data: dict[str, Any]


EventSink = Callable[[RunEvent], Awaitable[None]]


async def stream_agent(
    agent: Agent[Any, Any], prompt: Any, kwargs: dict[str, Any], emit: EventSink
) -> AgentRunResult[Any]:
    """Run `agent` as `agent.run(prompt, **kwargs)` would, emitting its events as they happen."""
    async with agent.iter(prompt, **kwargs) as run:
        async for node in run:
            if Agent.is_model_request_node(node):
                reason = retry_reason(node.request)
                if reason is not None:
                    await emit(RunEvent("model.retry", {"reason": reason}))
                async with node.stream(run.ctx) as stream:
                    await _Response(stream, emit).relay()
            elif Agent.is_call_tools_node(node):
                async with node.stream(run.ctx) as stream:
                    async for event in stream:
                        mapped = tool_event(event)
                        if mapped is not None:
                            await emit(mapped)
    if run.result is None:
        raise RuntimeError("the agent's run ended without a result")
    return run.result


def retry_reason(request: ModelRequest) -> str | None:
    """Why this request answers a discarded response, or None when it does not."""
    for part in request.parts:
        if isinstance(part, RetryFeedbackPart):
            text = part.content if isinstance(part.content, str) else "; ".join(e["msg"] for e in part.content)
            return text[:_REASON_CHARS]
        if isinstance(part, ToolReturnPart) and part.outcome == "retried":
            return f"tool {part.tool_name}: {part.model_response_str(wrap_if_error=False)}"[:_REASON_CHARS]
    return None


def tool_event(event: object) -> RunEvent | None:
    if isinstance(event, FunctionToolCallEvent):
        call = event.part
        return RunEvent(
            "tool.call", {"tool_call_id": call.tool_call_id, "name": call.tool_name, "args": call.args_as_dict()}
        )
    if isinstance(event, FunctionToolResultEvent) and isinstance(event.part, ToolReturnPart):
        result = event.part
        return RunEvent(
            "tool.result",
            {
                "tool_call_id": result.tool_call_id,
                "name": result.tool_name,
                "ok": result.outcome == "success",
                "content": result.model_response_str()[:CONTENT_CHARS],
            },
        )
    return None


class _Response:
    """One streamed model response: its text deltas, and its structured output as it grows."""

    def __init__(self, stream: Any, emit: EventSink) -> None:
        self.stream = stream
        self.emit = emit
        self.structured = False  # the output comes through an output tool, whose args are the object
        self.unchecked = False  # output deltas since the last partial was validated
        self.checked_at = 0.0
        self.last: Any = None

    async def relay(self) -> None:
        async for event in self.stream:
            text = _text_of(event)
            if text:
                await self.emit(RunEvent("text.delta", {"text": text}))
            if isinstance(event, FinalResultEvent):
                self.structured = event.tool_name is not None
            elif self.structured and isinstance(event, PartDeltaEvent):
                self.unchecked = True
                if time.monotonic() - self.checked_at >= _PARTIAL_EVERY_S:
                    await self._partial()
        if self.unchecked:
            await self._partial()

    async def _partial(self) -> None:
        self.unchecked, self.checked_at = False, time.monotonic()
        try:
            output = await self.stream.validate_response_output(self.stream.response, allow_partial=True)
        except Exception:  # not valid yet (a required field still to come), or a validator refused it
            return
        if isinstance(output, DeferredToolRequests):
            return
        value = to_jsonable_python(output)
        if value != self.last:
            self.last = value
            await self.emit(RunEvent("output.delta", {"output": value}))


def _text_of(event: object) -> str | None:
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content or None
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta or None
    return None
