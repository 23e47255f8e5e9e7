"""Pydantic AI's capability interface, driven by agentkeep's `Hook`s: one instance per run.

The run's own agent gets the capability at depth 0. While it runs, every agent run its tools (or
instructions, or validators) start gets a child at depth 1 on the same `RunState` and hooks
(`agentkeep.nesting`), and so on down: every model request the run causes passes the same budget,
breakers, retries, metrics and steps, and counts once in the run's usage. A child keeps its own
messages, so `partial_messages()` stays the run's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models import Model, ModelRequestContext
from pydantic_ai.run import AgentRunResult
from pydantic_ai.tools import ToolDefinition

from agentkeep import nesting
from agentkeep.failures import ToolError
from agentkeep.hooks import Hook, ModelCall, ModelProceed, RunState, ToolCall, ToolProceed

__all__ = ["PipelineCapability"]


@dataclass
class PipelineCapability(AbstractCapability[Any]):
    """Adapts a list of `Hook`s to Pydantic AI's capability interface for one run."""

    run: RunState
    hooks: Sequence[Hook]
    models: nesting.ModelPolicy | None = None  # the model an agent run started inside this one uses
    depth: int = 0  # 0: the run's own agent; 1: an agent its tools run; and so on
    _messages: list[ModelMessage] = field(default_factory=list)

    def partial_messages(self) -> list[ModelMessage]:
        """The messages this run added so far, for the record of a run that failed midway."""
        return list(self._messages[self.run.history_len :])

    async def wrap_run(self, ctx: RunContext[Any], *, handler: Callable[[], Awaitable[AgentRunResult[Any]]]) -> Any:
        # Set around the run body, so agent runs started inside it (in tools) join this run, not
        # this call itself.
        with nesting.nested(nesting.Nest(self._child, self.models)):
            return await handler()

    def _child(self) -> PipelineCapability:
        return PipelineCapability(self.run, self.hooks, self.models, self.depth + 1)

    async def wrap_model_request(
        self,
        ctx: RunContext[Any],
        *,
        request_context: ModelRequestContext,
        handler: Callable[[ModelRequestContext], Awaitable[ModelResponse]],
    ) -> ModelResponse:
        self._messages = ctx.messages
        call = self._call(ctx, request_context)

        async def innermost() -> ModelResponse:
            response = await handler(call.context)
            self._count(response)
            return response

        proceed: ModelProceed = innermost
        for hook in reversed(self.hooks):
            proceed = _bind_model(hook, self.run, call, proceed)
        return await proceed()

    def get_wrapper_model(self, model: Model) -> Model | None:
        wrapped = model
        for hook in reversed(self.hooks):
            wrapped = hook.wrap_model(wrapped) or wrapped
        return None if wrapped is model else wrapped

    async def on_model_request_error(
        self, ctx: RunContext[Any], *, request_context: ModelRequestContext, error: Exception
    ) -> ModelResponse:
        call = self._call(ctx, request_context)
        for hook in self.hooks:
            await hook.on_model_request_error(self.run, call, error)
        raise error

    async def wrap_tool_execute(
        self,
        ctx: RunContext[Any],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: Any,
        handler: Callable[[Any], Awaitable[Any]],
    ) -> Any:
        tool_call = ToolCall(
            name=call.tool_name, args=args, call_id=call.tool_call_id, step=ctx.run_step, metadata=tool_def.metadata
        )
        self.run.usage.tool_calls += 1
        if call.tool_name not in self.run.tools_used:
            self.run.tools_used.append(call.tool_name)

        async def innermost() -> Any:
            try:
                return await handler(tool_call.args)
            except Exception as exc:
                # Pydantic AI's own exceptions are control flow (retry, defer); anything else is the tool's fault.
                if type(exc).__module__.startswith(("pydantic_ai", "agentkeep")):
                    raise
                raise ToolError(call.tool_name, exc) from exc

        proceed: ToolProceed = innermost
        for hook in reversed(self.hooks):
            proceed = _bind_tool(hook, self.run, tool_call, proceed)
        return await proceed()

    def _call(self, ctx: RunContext[Any], request_context: ModelRequestContext) -> ModelCall:
        return ModelCall(
            model=request_context.model,
            messages=request_context.messages,
            context=request_context,
            attempt=request_context.attempt,
            agent=ctx.agent.name if ctx.agent is not None else None,
            depth=self.depth,
        )

    def _count(self, response: ModelResponse) -> None:
        usage = self.run.usage
        usage.requests += 1
        usage.input_tokens += response.usage.input_tokens
        usage.output_tokens += response.usage.output_tokens


def _bind_model(hook: Hook, run: RunState, call: ModelCall, inner: ModelProceed) -> ModelProceed:
    async def proceed() -> ModelResponse:
        return await hook.wrap_model_request(run, call, inner)

    return proceed


def _bind_tool(hook: Hook, run: RunState, call: ToolCall, inner: ToolProceed) -> ToolProceed:
    async def proceed() -> Any:
        return await hook.wrap_tool_call(run, call, inner)

    return proceed
