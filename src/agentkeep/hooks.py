"""What runs around each run, model request and tool call.

A `Hook` is a piece of cross-cutting behaviour — metrics, logs, budgets, breakers, durable steps —
written once against agentkeep's own small interface rather than Pydantic AI's. The runtime turns
an ordered list of hooks into one Pydantic AI capability per run (`agentkeep.pipeline`); the first
hook in the list is the outermost wrapper. This module sits at the bottom of the layers, so budget,
resilience and observability can each implement a `Hook` without importing the runtime.

    hooks = [Metrics(), Budget(), Breaker()]   # Metrics sees the time Budget and Breaker take
"""

from __future__ import annotations

import time
from abc import ABC
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestContext

__all__ = [
    "Hook",
    "ModelCall",
    "ModelProceed",
    "RunOutcome",
    "RunState",
    "ToolCall",
    "ToolProceed",
    "Usage",
    "idempotency_key",
    "idempotency_scope",
]


@dataclass
class Usage:
    """Token and call counts of one run."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "tool_calls": self.tool_calls,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        return cls(**{k: int(data.get(k, 0)) for k in ("requests", "input_tokens", "output_tokens", "tool_calls")})


@dataclass
class RunState:
    """What hooks know about the run in progress. Hooks may read everything and add to `extras`."""

    run_id: str
    session_id: str
    user_id: str
    agent: str
    background: bool = False
    # The model the run will use, for hooks that judge it before the first request (the budget
    # prices it, the breaker checks it); None when the runtime cannot know it (a task's agent calls).
    model: Model | str | None = None
    history_len: int = 0  # messages of session history the run started from; the rest are its own
    metadata: dict[str, Any] = field(default_factory=dict)  # the request's, as given
    resumes: int = 0  # how many times the run was resumed after waiting for a tool decision
    started: float = field(default_factory=time.monotonic)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0
    tools_used: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def add_cost(self, cost: float | None) -> None:
        """Add a priced amount; an unknown price makes the run's cost unknown for good."""
        if cost is None or self.cost_usd is None:
            self.cost_usd = None
        else:
            self.cost_usd += cost


@dataclass
class ModelCall:
    """One model request as hooks see it."""

    model: Model
    messages: list[ModelMessage]
    context: ModelRequestContext
    attempt: int = 1
    agent: str | None = None  # the name of the agent making it, when it has one
    depth: int = 0  # 0: the run's own agent; 1: an agent one of its tools runs; and so on

    @property
    def model_name(self) -> str:
        return self.model.model_name

    @property
    def system(self) -> str:
        return self.model.system


@dataclass
class ToolCall:
    """One tool call as hooks see it."""

    name: str
    args: Any
    call_id: str
    step: int
    metadata: dict[str, Any] | None = None  # the tool's own, e.g. {"cost_usd": 0.01} for a priced tool


@dataclass
class RunOutcome:
    """How a run ended, for `Hook.after_run`."""

    status: str  # a RunStatus value
    error_type: str | None = None
    error: BaseException | None = None


ModelProceed = Callable[[], Awaitable[ModelResponse]]
ToolProceed = Callable[[], Awaitable[Any]]

_IDEMPOTENCY_KEY: ContextVar[str | None] = ContextVar("agentkeep_idempotency_key", default=None)


def idempotency_key() -> str | None:
    """For a tool: a key that stays the same for this tool call across retries, crashes and
    takeovers of a background run (its run id and step number), so a payment-style API called with
    it acts once. None outside a background run.

        from agentkeep.hooks import idempotency_key
        stripe.PaymentIntent.create(amount=500, currency="eur", idempotency_key=idempotency_key())
    """
    return _IDEMPOTENCY_KEY.get()


@contextmanager
def idempotency_scope(key: str) -> Iterator[None]:
    """Make `key` what `idempotency_key()` returns inside the block (the durable steps set it)."""
    token = _IDEMPOTENCY_KEY.set(key)
    try:
        yield
    finally:
        _IDEMPOTENCY_KEY.reset(token)


class Hook(ABC):  # noqa: B024 — every method has a pass-through default; override what you need
    """Behaviour around a run. Every method is optional."""

    async def admit(self, run: RunState) -> None:
        """Called before a new run is recorded. Raise an AgentkeepError to refuse it at once, with
        nothing stored (e.g. every model it could use has an open circuit breaker).

        `run` is provisional: its `run_id` is empty and it is not the state `before_run` gets.
        """

    async def before_run(self, run: RunState) -> None:
        """Called once before the first model request. Raise an AgentkeepError to refuse the run."""

    async def after_run(self, run: RunState, outcome: RunOutcome) -> None:
        """Called once when the run ends, however it ends."""

    async def wrap_model_request(self, run: RunState, call: ModelCall, proceed: ModelProceed) -> ModelResponse:
        """Around one model request, all its attempts included; call `proceed()` once to send it."""
        return await proceed()

    def wrap_model(self, model: Model) -> Model | None:
        """The model that serves each attempt at a model request, wrapped; None leaves it as it is.

        Called for every attempt; the first hook's wrapper is the outermost. A wrapper that sends
        nothing (an open circuit breaker) makes the attempt fail without touching the network.
        """
        return None

    async def on_model_request_error(self, run: RunState, call: ModelCall, error: Exception) -> None:
        """One attempt at a model request failed with `error` (`call.attempt` says which).

        Return to let the error go on to the next hook and then the run; raise
        `pydantic_ai.exceptions.RetryModelRequest` to make another attempt; raise another
        exception to fail with that instead.
        """

    async def wrap_tool_call(self, run: RunState, call: ToolCall, proceed: ToolProceed) -> Any:
        """Around one tool call; call `proceed()` to execute the tool."""
        return await proceed()
