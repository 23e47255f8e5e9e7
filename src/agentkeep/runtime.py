"""The run pipeline every entry point goes through: HTTP, the durable worker and Lambda.

    prepare()  validate the input, pick the agent, admit the run, record it and claim its session
    execute()  load history → run the agent with the hooks around every model request and tool
               call → persist the new messages and the run's outcome in one transaction; or, when
               a tool call waits for a decision (`agentkeep.deferred`), the run's state so far,
               its session kept: `agentkeep.approvals` resumes it through `execute` again

and the pieces every other kind of run is built from, so there is one life of a run: `admit_run()`
(refusals before anything is stored), `new_record()`, `lease_s`, `scope()` (`agentkeep.lifecycle`:
the active-run slot, the hooks' before/after, the recorded outcome), `fail()` and `run_agent()`.
Background runs, tasks and schedules (`agentkeep.durable`) use these, never their own copies.

Nothing here knows about HTTP: errors are `AgentkeepError`s, streaming is a callback of `RunEvent`s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import structlog
from pydantic_ai import Agent, UsageLimits
from pydantic_ai.messages import ModelMessage, UserContent
from pydantic_ai.models import Model
from pydantic_ai.run import AgentRunResult
from pydantic_core import to_jsonable_python

from agentkeep import nesting
from agentkeep.api_models import run_result
from agentkeep.config import Settings
from agentkeep.deferred import AgentCall, Deferral, Paused, Pending
from agentkeep.errors import Draining, NotFound, Overloaded, RunFailed
from agentkeep.failures import classify
from agentkeep.hooks import Hook, RunState, Usage
from agentkeep.lifecycle import ActiveRuns, RunScope, record_failure, run_scope
from agentkeep.loader import AgentMap
from agentkeep.parts import MessageReader, clean_message
from agentkeep.pipeline import PipelineCapability
from agentkeep.requests import ANONYMOUS_USER, SESSION_ID_RE, PreparedRun, RunRequest, check_session_id, new_id
from agentkeep.serving import ServedAgents
from agentkeep.stores.base import RunRecord, RunStatus
from agentkeep.streaming import EventSink, RunEvent, stream_agent
from agentkeep.transcript import load_chunks

if TYPE_CHECKING:  # an annotation only: importing the runtime does not load SQLAlchemy
    from agentkeep.stores.sql import SQLStore

__all__ = [
    "ANONYMOUS_USER",
    "SESSION_ID_RE",
    "EventSink",
    "PreparedRun",
    "RunEvent",
    "RunRequest",
    "Runtime",
    "check_session_id",
    "clean_message",
    "new_id",
]

log = structlog.get_logger("agentkeep.runtime")

_LEASE_MARGIN_S = 30.0  # past the run deadline: time to record the outcome before the lease lapses


class Runtime:
    """Runs agents for callers; owns the active-run count, the drain state and each run's life."""

    def __init__(self, settings: Settings, agents: AgentMap, store: SQLStore, hooks: Sequence[Hook] = ()) -> None:
        self.settings = settings
        self.served = ServedAgents(settings, agents)  # their AgentApps, models, deps and resources
        self.agents, self.models, self.default_agent = self.served.agents, self.served.models, self.served.default
        self.store = store
        self.hooks = list(hooks)
        self.messages = MessageReader(settings)
        self.deferrals = {name: Deferral.of(agent) for name, agent in self.agents.items()}
        self.active = ActiveRuns()
        self.draining = False
        nesting.install()  # agent runs started inside a run join it (nesting.py)

    @property
    def active_runs(self) -> int:
        """Runs executing in this process now: agent runs of every kind, and task runs."""
        return self.active.count

    @property
    def lease_s(self) -> float:
        """How long a run holds its session: its deadline, and a margin to record its outcome."""
        return self.settings.run_timeout_s + _LEASE_MARGIN_S

    # --- admission ---

    async def prepare(self, request: RunRequest) -> PreparedRun:
        """Validate, record and claim: after this returns the run exists and owns its session."""
        message = await self.messages.read(request.message)
        session_id = check_session_id(request.session_id) if request.session_id else new_id("ses")
        agent = request.agent or self.default_agent
        if agent not in self.agents:
            raise NotFound(f"no agent named {agent!r}; this server has: {', '.join(self.agents)}")
        holds_slot = await self.admit_run(agent, request.user_id, session_id, background=request.background)
        try:
            record = self.new_record(
                agent=agent,
                input=message.text,
                user_id=request.user_id,
                session_id=session_id,
                background=request.background,
                metadata=request.metadata,
                webhook_url=request.webhook_url,
                input_parts=message.parts,
            )
            history = load_chunks(await self.store.start_run(record, self.lease_s))
            return PreparedRun(record, history, holds_slot)
        except BaseException:
            if holds_slot:
                self.active.leave()
            raise

    def admit(self) -> None:
        """Refuse new work while draining or at the concurrency cap."""
        if self.draining:
            raise Draining("the server is shutting down; retry on another instance", retry_after=5)
        if self.active_runs >= self.settings.max_concurrent_runs:
            raise Overloaded(
                f"{self.active_runs} runs are active, the limit of this process; retry shortly", retry_after=1
            )

    async def admit_run(self, agent: str, user_id: str, session_id: str, *, background: bool) -> bool:
        """Refuse a new run before anything is stored: `admit()`, then every hook's `admit`.

        A run that executes now (not `background`) is counted from here, so a burst cannot all pass
        `admit()` before any of them is counted. Returns whether the caller holds that slot now: it
        hands it to `execute` (`PreparedRun.holds_slot`), or gives it back if recording fails.
        """
        self.admit()
        holds_slot = not background
        if holds_slot:
            self.active.enter()
        try:
            provisional = RunState("", session_id, user_id, agent, background, model=self._model_of(agent))
            for hook in self.hooks:
                await hook.admit(provisional)
        except BaseException:
            if holds_slot:
                self.active.leave()
            raise
        return holds_slot

    def new_record(
        self,
        *,
        agent: str,
        input: str,
        user_id: str,
        background: bool,
        session_id: str | None = None,
        run_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        webhook_url: str | None = None,
        input_parts: list[dict[str, Any]] | None = None,
    ) -> RunRecord:
        """A new run's record, not stored yet: `queued` in the background, else `running` from now;
        on a new session unless `session_id` names one."""
        now = time.time()
        return RunRecord(
            run_id=run_id or new_id("run"),
            session_id=session_id or new_id("ses"),
            user_id=user_id,
            agent=agent,
            status=RunStatus.QUEUED if background else RunStatus.RUNNING,
            input=input,
            created_at=now,
            started_at=None if background else now,
            metadata=metadata if metadata is not None else {},
            background=background,
            webhook_url=webhook_url,
            input_parts=input_parts,
        )

    async def fail(self, record: RunRecord, failure: RunFailed) -> None:
        """Record a run that ended by `failure` before it executed (it could not be queued, its
        session stayed busy), and free its session."""
        record.finished_at = time.time()
        await record_failure(self.store, record, failure)

    # --- execution ---

    async def run(self, request: RunRequest) -> dict[str, Any]:
        """Prepare and execute a synchronous run; return the RunResult or raise `RunFailed`."""
        return await self.execute(await self.prepare(request))

    def scope(
        self,
        record: RunRecord,
        *,
        durable: Sequence[Hook] | None = None,
        resumed: bool = False,
        holds_slot: bool = False,
        since: float | None = None,
    ) -> AbstractAsyncContextManager[RunScope]:
        """The life of `record`'s run on the current task (`agentkeep.lifecycle`): counted in
        `active_runs` and seen by `interrupt()`, the hooks' before/after around it, its outcome
        recorded once. A `durable` run brings its checkpointing hooks (outermost); `resumed` says
        it executes again; `since` is when its duration counts from, if not now."""
        model = self._model_of(record.agent)
        state = RunState(
            record.run_id,
            record.session_id,
            record.user_id,
            record.agent,
            record.background,
            model=model,
            metadata=record.metadata,
        )
        if record.resumes:  # it continues after a wait: what it used before counts on
            state.resumes, state.tools_used = record.resumes, list(record.tools_used)
            state.usage = Usage.from_dict(record.usage.as_dict())
        hooks = [*durable, *self.hooks] if durable is not None else self.hooks
        return run_scope(
            self.active,
            self.store,
            record,
            state,
            hooks,
            durable=durable is not None,
            resumed=resumed,
            holds_slot=holds_slot,
            since=since,
        )

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
        holds_slot, prepared.holds_slot = prepared.holds_slot, False
        call = AgentCall.of(record, self.deferrals[record.agent], prepared.history)
        earlier = call.earlier  # a resumed run's messages up to its pause
        async with self.scope(record, durable=durable, resumed=resumed, holds_slot=holds_slot) as run:
            if record.resumes:
                run.prior_ms, run.prior_steps = record.duration_ms or 0.0, record.steps_json
            capability = self.capability(run.state, run.hooks)
            if emit is not None:
                await emit(RunEvent("run.started", {"run_id": record.run_id, "session_id": record.session_id}))
            try:
                await run.before_run()
                ended = await self._turn(record, call, capability, emit)
            except BaseException as exc:
                if run.detaches(exc):
                    raise  # the scope leaves it unfinished, recording nothing
                failure = classify(exc)
                if failure.error_type == "internal_error":
                    log.error("run_internal_error", run_id=record.run_id, exc_info=exc)
                await run.fail(failure, exc, partial=[*earlier, *capability.partial_messages()])
                if emit is not None:
                    await emit(RunEvent("run.failed", failure.envelope()))
                if isinstance(exc, asyncio.CancelledError) and not run.interrupted_here(exc):
                    raise
                raise failure from None
            if isinstance(ended, Paused):
                pending = Pending.of(ended)
                until = time.time() + self.settings.approval_timeout_s
                messages = [*earlier, *ended.messages]
                if not await run.wait(pending.view(), pending.dump(), messages, until, self.lease_s):
                    raise RunFailed("cancelled", "the run was cancelled as it paused; its state was not kept")
                done = "run.waiting"
            else:
                output = to_jsonable_python(ended.output)
                if not await run.succeed(output, [*earlier, *ended.new_messages()]):
                    raise RunFailed("cancelled", "the run was cancelled as it finished; its answer was not kept")
                done = "run.completed"
            payload = run_result(record)
            if emit is not None:
                await emit(RunEvent(done, payload))
            return payload

    async def _turn(
        self, record: RunRecord, call: AgentCall, capability: PipelineCapability, emit: EventSink | None
    ) -> AgentRunResult[Any] | Paused:
        """The run's agent call: from its message, or, resumed, from its pause with the decisions.
        Ends with the agent's result, or `Paused` when a tool call waits for a decision."""
        try:
            result = await self.run_agent(
                self.agents[record.agent],
                call.prompt,
                capability,
                model=self.models[record.agent],
                history=call.history,
                emit=emit,
                options={**call.options, "capabilities": [*call.capabilities, capability]},
                run_id=call.run_id,
                conversation_id=record.session_id,
            )
        except Paused as paused:
            return paused
        return Paused.of(result) or result

    def capability(self, state: RunState, hooks: Sequence[Hook]) -> PipelineCapability:
        """The capability of one agent call of a run: its hooks around every model request and tool
        call, its own agent's and those of every agent run started inside it (`nesting`)."""
        return PipelineCapability(state, hooks, models=self.served.nested_model)

    def model_for(self, agent: Agent[Any, Any]) -> Model | None:
        """The model a call of `agent` uses (`ServedAgents.model_for`)."""
        return self.served.model_for(agent)

    async def run_agent(
        self,
        agent: Agent[Any, Any],
        prompt: str | Sequence[UserContent] | None,
        capability: PipelineCapability,
        *,
        model: Model | None,
        history: list[ModelMessage] | None = None,
        emit: EventSink | None = None,
        options: dict[str, Any] | None = None,
        **ids: str,
    ) -> AgentRunResult[Any]:
        """One agent call under the run's hooks, its deps, its limits and its deadline; with `emit`,
        streamed (`agentkeep.streaming`). `options` are more of `agent.run`'s arguments (the run's
        `output_type`, `deferred_tool_results`, `capabilities`); `ids` are Pydantic AI's `run_id` and
        `conversation_id`, when the call is the run.

        Every kind of run calls its agent here (sync, streamed, background, a task's `ask()`, a
        resumed run), so the deps factory runs for each, in the process that executes it."""
        kwargs: dict[str, Any] = {
            "message_history": history or None,
            "model": model,
            "usage_limits": UsageLimits(
                request_limit=self.settings.max_model_requests,
                total_tokens_limit=self.settings.max_tokens_per_run,
                tool_calls_limit=self.settings.max_tool_calls_per_run,
            ),
            "capabilities": [capability],
            **(options or {}),
            **ids,
        }
        capability.run.history_len = len(history or ())
        async with asyncio.timeout(self.settings.run_timeout_s):
            deps = await self.served.deps_for(agent, capability.run)
            if deps is not None:
                kwargs["deps"] = deps
            if emit is None:
                return await agent.run(prompt, **kwargs)
            return await stream_agent(agent, prompt, kwargs, emit)

    def _model_of(self, agent: str) -> Model | str | None:
        """The model a run of `agent` will use; None for a task (`task:NAME`), whose agent calls are its own."""
        return self.served.model_of(agent) if agent in self.agents else None

    # --- drain ---

    def interrupt(self) -> int:
        """Cancel every run executing here (a drain out of time); returns how many were running.

        An agent run is recorded `interrupted` and its caller gets `RunFailed("interrupted")` (HTTP
        503), not the cancellation: the task was only cancelled to stop the agent. A durable run
        (a background run, a task) records nothing and is resumed by the next process.
        """
        return self.active.interrupt()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no run is active; False if `timeout` passed first."""
        return await self.active.wait_idle(timeout)
