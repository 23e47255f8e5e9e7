"""The `RunLimits` hook: a run's caps on tokens and tool calls, counting everything it caused.

    AGENTKEEP_MAX_TOKENS_PER_RUN       input + output tokens of every model request of the run
    AGENTKEEP_MAX_TOOL_CALLS_PER_RUN   tool calls of the run

The runtime passes both to Pydantic AI's `UsageLimits` for the run's own agent, which counts its
requests and tool calls (and those of sub-agents given `usage=ctx.usage`). A sub-agent run without
it has counters of its own; but its requests and tool calls pass the run's hooks (`nesting`) and
count in `RunState.usage`, so this hook checks that total before each model request and tool call
at any depth. Past a cap the run fails `iteration_limit`, naming the setting.
"""

from __future__ import annotations

from typing import Any

from pydantic_ai.messages import ModelResponse

from agentkeep.errors import RunFailed
from agentkeep.hooks import Hook, ModelCall, ModelProceed, RunState, ToolCall, ToolProceed

__all__ = ["RunLimits"]


class RunLimits(Hook):
    """Refuses a model request once the run's tokens reached `max_tokens`, and a tool call past `max_tool_calls`."""

    def __init__(self, *, max_tokens: int | None = None, max_tool_calls: int | None = None) -> None:
        self.max_tokens = max_tokens
        self.max_tool_calls = max_tool_calls

    async def wrap_model_request(self, run: RunState, call: ModelCall, proceed: ModelProceed) -> ModelResponse:
        used = run.usage.input_tokens + run.usage.output_tokens
        if self.max_tokens is not None and used >= self.max_tokens:
            raise RunFailed(
                "iteration_limit",
                f"the run used {used} tokens, its limit (AGENTKEEP_MAX_TOKENS_PER_RUN) is {self.max_tokens}",
            )
        return await proceed()

    async def wrap_tool_call(self, run: RunState, call: ToolCall, proceed: ToolProceed) -> Any:
        # The pipeline counted this call already: more than the cap means this one is over it.
        if self.max_tool_calls is not None and run.usage.tool_calls > self.max_tool_calls:
            raise RunFailed(
                "iteration_limit",
                f"the run reached its limit of {self.max_tool_calls} tool calls (AGENTKEEP_MAX_TOOL_CALLS_PER_RUN)",
            )
        return await proceed()
