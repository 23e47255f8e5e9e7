"""The run pipeline every entry point goes through: HTTP, the durable worker and Lambda.

    prepare()  validate the input, pick the agent, record the run and claim its session
    execute()  load history → run the agent with the hooks around every model request and tool
               call → persist the new messages and the run's outcome in one transaction

Nothing here knows about HTTP: errors are `AgentkeepError`s, streaming is a callback of `RunEvent`s.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from pydantic_ai import Agent, UsageLimits
from pydantic_ai.messages import (
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelMessagesTypeAdapter,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)
from pydantic_ai.models import Model
from pydantic_ai.run import AgentRunResult, AgentRunResultEvent

from agentkeep.config import Settings
from agentkeep.errors import AgentkeepError, Draining, InvalidRequest, NotFound, Overloaded, PayloadTooLarge, RunFailed
from agentkeep.failures import Detached, classify
from agentkeep.hooks import Hook, RunOutcome, RunState
from agentkeep.loader import AgentMap
from agentkeep.models import resolve_model
from agentkeep.observability.steps import steps_json
from agentkeep.pipeline import PipelineCapability
from agentkeep.stores.base import RunRecord, RunStatus, Store
from agentkeep.transcript import load_chunks

log = structlog.get_logger("agentkeep.runtime")

ANONYMOUS_USER = "anonymous"
SESSION_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LEASE_MARGIN_S = 30.0
_T = TypeVar("_T")


@dataclass
class RunRequest:
    """What a caller asks for, before validation."""

    message: str
    user_id: str = ANONYMOUS_USER
    session_id: str | None = None
    agent: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    background: bool = False
    webhook_url: str | None = None


@dataclass
class RunEvent:
    """One streamed event: `run.started`, `text.delta`, `tool.call`, `tool.result`, `run.completed`, `run.failed`."""

    name: str
    data: dict[str, Any]


EventSink = Callable[[RunEvent], Awaitable[None]]


@dataclass
class PreparedRun:
    """A run that is recorded and holds its session, ready to execute."""

    record: RunRecord
    history: list[ModelMessage]
    # A synchronous or streamed run takes its slot under the concurrency cap at admission, so a
    # burst cannot all pass `admit()` before any of them is counted; `execute` takes it over.
    holds_slot: bool = False


def clean_message(message: str, max_chars: int) -> str:
    """Drop control characters other than newline and tab, trim, and check the length."""
    text = _CONTROL_CHARS.sub("", message).strip()
    if not text:
        raise InvalidRequest("message is empty: send some text in the 'message' field")
    if len(text) > max_chars:
        raise PayloadTooLarge(f"message has {len(text)} characters; the limit is {max_chars}")
    return text


def check_session_id(session_id: str) -> str:
    if not SESSION_ID_RE.fullmatch(session_id):
        raise InvalidRequest("session_id must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'")
    return session_id


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class Runtime:
    """Runs agents for callers; owns the active-run count and the drain state."""

    def __init__(self, settings: Settings, agents: AgentMap, store: Store, hooks: Sequence[Hook] = ()) -> None:
        self.settings = settings
        self.agents = agents
        self.store = store
        self.hooks = list(hooks)
        self.default_agent = next(iter(agents))
        self.models: dict[str, Model | None] = {
            name: resolve_model(settings.model, agent) for name, agent in agents.items()
        }
        self.active_runs = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._running: set[asyncio.Task[Any]] = set()  # the tasks executing runs, for `interrupt()`
        self._interrupted: set[asyncio.Task[Any]] = set()

    # --- admission ---

    async def prepare(self, request: RunRequest) -> PreparedRun:
        """Validate, record and claim: after this returns the run exists and owns its session."""
        message = clean_message(request.message, self.settings.max_message_chars)
        session_id = check_session_id(request.session_id) if request.session_id else new_id("ses")
        agent = request.agent or self.default_agent
        if agent not in self.agents:
            raise NotFound(f"no agent named {agent!r}; this server has: {', '.join(self.agents)}")
        self.admit()
        holds_slot = not request.background
        if holds_slot:
            self._enter()
        try:
            provisional = RunState("", session_id, request.user_id, agent, request.background)
            provisional.extras["model"] = self._model_of(agent)
            for hook in self.hooks:
                await hook.admit(provisional)
            return await self._record(request, message, session_id, agent, holds_slot)
        except BaseException:
            if holds_slot:
                self._leave()
            raise

    async def _record(
        self, request: RunRequest, message: str, session_id: str, agent: str, holds_slot: bool
    ) -> PreparedRun:
        record = RunRecord(
            run_id=new_id("run"),
            session_id=session_id,
            user_id=request.user_id,
            agent=agent,
            status=RunStatus.QUEUED if request.background else RunStatus.RUNNING,
            input=message,
            created_at=time.time(),
            metadata=request.metadata,
            background=request.background,
            webhook_url=request.webhook_url,
        )
        record.started_at = None if request.background else record.created_at
        lease = self.settings.run_timeout_s + _LEASE_MARGIN_S
        history = load_chunks(await self.store.start_run(record, lease))
        return PreparedRun(record, history, holds_slot)

    def _model_of(self, agent: str) -> Model | str | None:
        return self.models[agent] or self.agents[agent].model

    def admit(self) -> None:
        """Refuse new work while draining or at the concurrency cap."""
        if self.draining:
            raise Draining("the server is shutting down; retry on another instance", retry_after=5)
        if self.active_runs >= self.settings.max_concurrent_runs:
            raise Overloaded(
                f"{self.active_runs} runs are active, the limit of this process; retry shortly", retry_after=1
            )

    # --- execution ---

    async def run(self, request: RunRequest) -> dict[str, Any]:
        """Prepare and execute a synchronous run; return the RunResult or raise `RunFailed`."""
        return await self.execute(await self.prepare(request))

    async def execute(
        self,
        prepared: PreparedRun,
        emit: EventSink | None = None,
        *,
        durable: Sequence[Hook] | None = None,
        resumed: bool = False,
    ) -> dict[str, Any]:
        """Run the agent and persist the outcome. Returns the RunResult; raises `RunFailed`.

        A `durable` run brings its checkpointing hooks (outermost); interrupted here or taken over
        elsewhere it raises `Detached`, recording nothing, and a later execution resumes it."""
        record = prepared.record
        state = RunState(record.run_id, record.session_id, record.user_id, record.agent, record.background)
        # The model the run will use, for hooks that judge it before the first request (the budget prices it).
        state.extras["model"] = self._model_of(record.agent)
        hooks = [*durable, *self.hooks] if durable is not None else self.hooks
        capability = PipelineCapability(state, hooks)
        if not prepared.holds_slot:
            self._enter()
        prepared.holds_slot = False
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        outcome = RunOutcome(status=RunStatus.FAILED.value)
        try:
            if emit is not None:
                await emit(RunEvent("run.started", {"run_id": record.run_id, "session_id": record.session_id}))
            try:
                await self._before_run(hooks, state, resumed=resumed)
                result = await self._run_agent(prepared, capability, emit)
            except BaseException as exc:
                if durable is not None and (isinstance(exc, Detached) or self._stopped_here(exc, task)):
                    outcome = RunOutcome(RunStatus.INTERRUPTED.value, "interrupted", exc)
                    raise Detached() from None
                failure = classify(exc)
                if failure.error_type == "internal_error":
                    log.error("run_internal_error", run_id=record.run_id, exc_info=exc)
                outcome = RunOutcome(failure_status(failure), failure.error_type, exc)
                await self._finish_failed(record, state, capability, failure)
                if emit is not None:
                    await emit(RunEvent("run.failed", failure.envelope()))
                if isinstance(exc, asyncio.CancelledError) and not self._was_interrupted(task):
                    raise
                raise failure from None
            if not await self._finish_succeeded(record, state, result, result.new_messages()):
                outcome = RunOutcome(RunStatus.CANCELLED.value, "cancelled")  # a cancel was recorded first
                raise RunFailed("cancelled", "the run was cancelled as it finished; its answer was not kept")
            outcome = RunOutcome(RunStatus.SUCCEEDED.value)
            payload = self.result_payload(record)
            if emit is not None:
                await emit(RunEvent("run.completed", payload))
            return payload
        finally:
            await self._after_run(hooks, state, outcome)
            if task is not None:
                self._running.discard(task)
                self._interrupted.discard(task)
            self._leave()

    async def _run_agent(
        self, prepared: PreparedRun, capability: PipelineCapability, emit: EventSink | None
    ) -> AgentRunResult[Any]:
        record = prepared.record
        agent: Agent[Any, Any] = self.agents[record.agent]
        kwargs: dict[str, Any] = {
            "message_history": prepared.history or None,
            "model": self.models[record.agent],
            "usage_limits": UsageLimits(request_limit=self.settings.max_model_requests),
            "capabilities": [capability],
            "run_id": record.run_id,
            "conversation_id": record.session_id,
        }
        capability.run.extras["history_len"] = len(prepared.history)
        async with asyncio.timeout(self.settings.run_timeout_s):
            if emit is None:
                return await agent.run(record.input, **kwargs)
            async with agent.run_stream_events(record.input, **kwargs) as events:
                async for event in events:
                    if isinstance(event, AgentRunResultEvent):
                        return event.result
                    mapped = _map_event(event)
                    if mapped is not None:
                        await emit(mapped)
        raise RunFailed("internal_error", "the agent's event stream ended without a result")

    async def _finish_succeeded(
        self, record: RunRecord, state: RunState, result: AgentRunResult[Any], new: list[ModelMessage]
    ) -> bool:
        record.status = RunStatus.SUCCEEDED
        record.output = _output_text(result.output)
        self._fill(record, state)
        record.messages_json = ModelMessagesTypeAdapter.dump_json(new)
        return await _shielded(self.store.finish_run(record, append_to_session=record.messages_json))

    async def _finish_failed(
        self, record: RunRecord, state: RunState, capability: PipelineCapability, failure: RunFailed
    ) -> None:
        record.status = RunStatus(failure_status(failure))
        record.error_type = failure.error_type
        record.error_message = failure.message
        self._fill(record, state)
        partial = capability.partial_messages()
        record.messages_json = ModelMessagesTypeAdapter.dump_json(partial) if partial else None
        await _shielded(self.store.finish_run(record, append_to_session=None))

    def _fill(self, record: RunRecord, state: RunState) -> None:
        record.finished_at = time.time()
        record.duration_ms = (time.monotonic() - state.started) * 1000
        record.usage, record.cost_usd, record.steps_json = state.usage, state.cost_usd, steps_json(state)
        record.tools_used = list(state.tools_used)

    async def _before_run(self, hooks: Sequence[Hook], state: RunState, *, resumed: bool) -> None:
        for hook in hooks:
            try:
                await hook.before_run(state)
            except AgentkeepError as exc:
                if not resumed:  # admitted when it started; its next model request still meets every check
                    raise
                log.info("run.resumed_despite_refusal", run_id=state.run_id, refusal=exc.type)

    async def _after_run(self, hooks: Sequence[Hook], state: RunState, outcome: RunOutcome) -> None:
        for hook in hooks:
            await hook.after_run(state, outcome)

    @staticmethod
    def result_payload(record: RunRecord) -> dict[str, Any]:
        """The contract's RunResult for a succeeded run."""
        return {
            "run_id": record.run_id,
            "session_id": record.session_id,
            "status": record.status.value,
            "output": record.output or "",
            "tools_used": record.tools_used,
            "usage": record.usage.as_dict(),
            "cost_usd": record.cost_usd,
            "duration_ms": round(record.duration_ms or 0.0, 3),
        }

    # --- the active-run count, for drain and backpressure ---

    def _enter(self) -> None:
        self.active_runs += 1
        self._idle.clear()

    def _leave(self) -> None:
        self.active_runs -= 1
        if self.active_runs == 0:
            self._idle.set()

    def interrupt(self) -> int:
        """Cancel every run executing here (a drain out of time); each is recorded `interrupted`.

        The caller of an interrupted run gets `RunFailed("interrupted")` (HTTP 503), not the
        cancellation: the task was only cancelled to stop the agent. Returns how many were running.
        """
        tasks = list(self._running)
        for task in tasks:
            self._interrupted.add(task)
            task.cancel("agentkeep: drain timeout")
        return len(tasks)

    def _stopped_here(self, exc: BaseException, task: asyncio.Task[Any] | None) -> bool:
        return isinstance(exc, asyncio.CancelledError) and self._was_interrupted(task)

    def _was_interrupted(self, task: asyncio.Task[Any] | None) -> bool:
        if task is None or task not in self._interrupted:
            return False
        task.uncancel()
        return True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no run is active; False if `timeout` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


def failure_status(failure: RunFailed) -> str:
    stopped = {"cancelled": RunStatus.CANCELLED, "interrupted": RunStatus.INTERRUPTED}
    return stopped.get(failure.error_type, RunStatus.FAILED).value


async def _shielded(work: Awaitable[_T]) -> _T:
    """Persist even when the caller is being cancelled: an acknowledged outcome must be written."""
    return await asyncio.shield(asyncio.ensure_future(work))


def _output_text(output: object) -> str:
    if isinstance(output, str):
        return output
    from pydantic_core import to_json

    return to_json(output).decode()


def _map_event(event: object) -> RunEvent | None:
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart) and event.part.content:
        return RunEvent("text.delta", {"text": event.part.content})
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta) and event.delta.content_delta:
        return RunEvent("text.delta", {"text": event.delta.content_delta})
    if isinstance(event, FunctionToolCallEvent):
        return RunEvent("tool.call", {"name": event.part.tool_name, "args": event.part.args_as_dict()})
    if isinstance(event, FunctionToolResultEvent):
        return RunEvent("tool.result", {"name": event.part.tool_name})
    return None
