"""Tool calls that wait for a decision: how a run pauses on them and continues after.

A tool declared `requires_approval=True`, or one that raises `ApprovalRequired` or `CallDeferred`,
pauses the run (Pydantic AI's deferred tools). How the runtime makes a run pause rather than fail,
decided once per agent (`Deferral.of`):

    native       the agent's output type already allows `DeferredToolRequests`: nothing to add
    output       no output validators: the run's `output_type` is `[agent's, DeferredToolRequests]`,
                 so the run ends with the requests as its output, the sibling calls' returns in
                 its messages (Pydantic AI keeps them)
    capability   output validators (Pydantic AI refuses a per-run `output_type` then):
                 `PauseCapability` raises `Paused` from `handle_deferred_tool_calls`, having
                 recorded how each sibling call settled, since those returns are not in the messages

Either way the run ends as a `Paused`. What a waiting run keeps in the database is a `Pending`: the
requests, the siblings' results, and once decided, the decisions. `Pending.decide` turns the API's
answers into `DeferredToolResults` (an `InvalidRequest` for an unknown or unanswered call), and
`Pending.closing` the messages that close every pending call as denied (a cancel, a timeout), so the
session's next run finds no call left unanswered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pydantic
from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, ModelRetry, ToolApproved, ToolDenied
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ToolRetryError
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
    ToolReturn,
    ToolReturnPart,
    UserContent,
    repair_messages,
)
from pydantic_ai.run import AgentRunResult

from agentkeep.errors import InvalidRequest
from agentkeep.parts import user_content
from agentkeep.stores.base import RunRecord

__all__ = ["AgentCall", "Deferral", "PauseCapability", "Paused", "Pending"]

_DENIED_BY_CANCEL = "The tool call was denied: the run was cancelled."


class Paused(Exception):  # an outcome, carried as an exception out of the agent's run
    """A run that stopped on deferred tool calls: `messages` are this execution's, `settled` the
    results of the calls of the last response that ran (only `PauseCapability` needs to carry them)."""

    def __init__(
        self, requests: DeferredToolRequests, messages: list[ModelMessage], settled: dict[str, Any] | None = None
    ) -> None:
        super().__init__("the run waits for tool decisions")
        self.requests = requests
        self.messages = messages
        self.settled = settled or {}

    @classmethod
    def of(cls, result: AgentRunResult[Any]) -> Paused | None:
        """The pause a run ended with when its output is the requests (`Deferral`'s output type)."""
        if isinstance(result.output, DeferredToolRequests):
            return cls(result.output, result.new_messages())
        return None


@dataclass
class PauseCapability(AbstractCapability[Any]):
    """Pauses a run on deferred calls for an agent whose output type cannot take them (`Deferral`)."""

    history_len: int = 0  # messages the run started from; `Paused.messages` are the rest
    settled: dict[str, Any] = field(default_factory=dict)

    async def wrap_tool_execute(self, ctx: Any, *, call: ToolCallPart, tool_def: Any, args: Any, handler: Any) -> Any:
        try:
            result = await handler(args)
        except ToolRetryError as exc:
            retry = exc.tool_retry  # the tool's own message, or (its args failed validation) the errors as JSON
            message = retry.model_response_str(wrap_if_error=False) if isinstance(retry, ToolReturnPart) else ""
            self.settled[call.tool_call_id] = ModelRetry(message or str(retry.content))
            raise
        self.settled[call.tool_call_id] = result
        return result

    async def handle_deferred_tool_calls(self, ctx: Any, *, requests: DeferredToolRequests) -> None:
        messages = list(ctx.messages)
        response = messages[-1] if messages and isinstance(messages[-1], ModelResponse) else None
        ids = {part.tool_call_id for part in response.parts if isinstance(part, ToolCallPart)} if response else set()
        siblings = {call_id: value for call_id, value in self.settled.items() if call_id in ids}
        raise Paused(requests, messages[self.history_len :], siblings)


@dataclass(frozen=True)
class Deferral:
    """How a run of one agent pauses on deferred calls (see the module docstring)."""

    output_type: Any = None  # the run's `output_type`, when it must be widened
    capability: bool = False  # pause through `PauseCapability` instead

    @classmethod
    def of(cls, agent: Agent[Any, Any]) -> Deferral:
        if _allows_deferred(agent.output_type):
            return cls()
        # Private, and read only here: Pydantic AI refuses a run's own `output_type` for an agent with
        # output validators (a UserError at `iter()`), and offers no public way to ask whether it has any.
        if getattr(agent, "_output_validators", None):
            return cls(capability=True)
        return cls(output_type=[agent.output_type, DeferredToolRequests])


@dataclass
class AgentCall:
    """The agent call of one execution of a run: afresh from its message, or resumed from its pause."""

    prompt: str | Sequence[UserContent] | None  # None: a resume, answering the pending calls instead
    history: list[ModelMessage]
    earlier: list[ModelMessage]  # a resumed run's messages up to its pause, part of `history`
    run_id: str  # Pydantic AI's: it refuses one already in the history, so a resume has its own
    options: dict[str, Any]  # more of `agent.run`'s arguments: `output_type`, `deferred_tool_results`
    # To put before the run's own, outermost: a tool call a durable run replays from its checkpoint
    # does not reach the capabilities inside the run's, and `PauseCapability` must see it settle.
    capabilities: list[AbstractCapability[Any]]

    @classmethod
    def of(cls, run: RunRecord, deferral: Deferral, history: list[ModelMessage]) -> AgentCall:
        """`run`'s call on its session's `history`; resumed (`run.resumes`), after its own messages
        up to its pause, with its decisions, and never repaired: its last calls are being answered.
        A new prompt's history is repaired, so a call an older run left unanswered cannot refuse it."""
        options: dict[str, Any] = {} if deferral.output_type is None else {"output_type": deferral.output_type}
        earlier: list[ModelMessage] = []
        if run.resumes:
            if run.messages_json is not None:
                earlier = ModelMessagesTypeAdapter.validate_json(run.messages_json)
            prompt, history, run_id = None, [*history, *earlier], f"{run.run_id}.r{run.resumes}"
            options["deferred_tool_results"] = Pending.load(run.deferred_json or b"").decisions
        else:
            prompt = run.input if run.input_parts is None else user_content(run.input_parts)
            history, run_id = repair_messages(history), run.run_id
        pause: list[AbstractCapability[Any]] = [PauseCapability(len(history))] if deferral.capability else []
        return cls(prompt, history, earlier, run_id, options, pause)


def _allows_deferred(output_type: Any) -> bool:
    if output_type is DeferredToolRequests:
        return True
    if isinstance(output_type, Sequence) and not isinstance(output_type, str):
        return any(_allows_deferred(item) for item in output_type)
    return False


class _State(pydantic.BaseModel):
    """A `Pending` as stored (`RunRecord.deferred_json`)."""

    requests: DeferredToolRequests
    settled: DeferredToolResults = pydantic.Field(default_factory=DeferredToolResults)
    decisions: DeferredToolResults | None = None


@dataclass
class Pending:
    """A waiting run's deferred calls: the requests, the siblings' results, the decisions once made."""

    requests: DeferredToolRequests
    settled: dict[str, Any] = field(default_factory=dict)
    decisions: DeferredToolResults | None = None

    @classmethod
    def of(cls, paused: Paused) -> Pending:
        return cls(paused.requests, dict(paused.settled))

    @classmethod
    def load(cls, stored: bytes) -> Pending:
        state = _State.model_validate_json(stored)
        return cls(state.requests, dict(state.settled.calls), state.decisions)

    def dump(self) -> bytes:
        state = _State(
            requests=self.requests, settled=DeferredToolResults(calls=self.settled), decisions=self.decisions
        )
        return state.model_dump_json().encode()

    def view(self) -> list[dict[str, Any]]:
        """The calls as the API lists them (`pending`): approvals first, then external calls."""
        return [
            {"tool_call_id": call.tool_call_id, "tool_name": call.tool_name, "args": call.args_as_dict(), "kind": kind}
            for kind, calls in (("approval", self.requests.approvals), ("external", self.requests.calls))
            for call in calls
        ]

    def decide(self, approvals: Mapping[str, Any], results: Mapping[str, Any]) -> DeferredToolResults:
        """The run's `DeferredToolResults` from the API's answers: an approval is `true`/`false` or
        `{"approved", "message"?, "args"?}`; a result is any JSON value. Every pending call must be
        answered, in the right field; `InvalidRequest` otherwise, naming the calls."""
        wanted = {call.tool_call_id for call in self.requests.approvals}
        external = {call.tool_call_id for call in self.requests.calls}
        _check("approvals", approvals, wanted, external, "results")
        _check("results", results, external, wanted, "approvals")
        missing = sorted((wanted - approvals.keys()) | (external - results.keys()))
        if missing:
            raise InvalidRequest(f"every pending tool call needs an answer; missing: {', '.join(missing)}")
        return DeferredToolResults(
            approvals={call_id: _approval(answer) for call_id, answer in approvals.items()},
            calls={**self.settled, **results},
        )

    def closing(self, messages: list[ModelMessage], reason: str = _DENIED_BY_CANCEL) -> list[ModelMessage]:
        """`messages` (the run's, up to its pause) with every pending call answered as denied
        because of `reason`, and each sibling's own result where only this record holds it."""
        calls = {
            part.tool_call_id: part
            for message in messages
            if isinstance(message, ModelResponse)
            for part in message.parts
            if isinstance(part, ToolCallPart)
        }
        parts: list[Any] = [_settled_return(calls[i], value) for i, value in self.settled.items() if i in calls]
        parts += [
            ToolReturnPart(tool_name=call.tool_name, content=reason, tool_call_id=call.tool_call_id, outcome="denied")
            for call in (*self.requests.approvals, *self.requests.calls)
        ]
        if messages and isinstance(messages[-1], ModelRequest):  # returns of siblings already there
            return [*messages[:-1], replace(messages[-1], parts=[*messages[-1].parts, *parts])]
        return [*messages, ModelRequest(parts=parts)]


def _check(name: str, given: Mapping[str, Any], own: set[str], other: set[str], other_name: str) -> None:
    for call_id in given:
        if call_id in other:
            raise InvalidRequest(f"tool call {call_id!r} is answered in `{other_name}`, not `{name}`")
        if call_id not in own:
            raise InvalidRequest(f"no pending tool call {call_id!r} in this run")


def _approval(answer: Any) -> bool | ToolApproved | ToolDenied:
    if isinstance(answer, bool):
        return answer
    if answer.get("approved"):
        args = answer.get("args")
        return ToolApproved(override_args=args) if args is not None else True
    message = answer.get("message")
    return ToolDenied(message) if message else False


def _settled_return(call: ToolCallPart, value: Any) -> ToolReturnPart:
    if isinstance(value, ModelRetry):
        return ToolReturnPart(call.tool_name, value.message, call.tool_call_id, outcome="retried")
    if isinstance(value, ToolReturn):
        return ToolReturnPart(call.tool_name, value.return_value, call.tool_call_id, metadata=value.metadata)
    return ToolReturnPart(call.tool_name, value, call.tool_call_id)
