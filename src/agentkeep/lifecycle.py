"""One run's life in this process, whatever started it: a request, a background run, a task, a schedule.

    ActiveRuns   the runs executing here: the count that backpressure and drain read, and the
                 tasks that `interrupt()` (a drain out of time) cancels
    RunScope     one run from its start to its recorded end: it holds an active-run slot, calls
                 the hooks' `before_run` and, however it ends, `after_run`; it records the outcome
                 once (`succeed` / `fail`, or `wait`: paused on tool decisions, its session kept
                 for the resume, which opens a scope of its own). A durable run interrupted here, or detached by its
                 checkpoints, leaves the scope as `Detached`, recording nothing, for a later
                 execution to resume
    run_scope()  the context manager that opens a `RunScope`; inside it the file tools act for
                 the run's user and session (`agentkeep.tools.scope`)

`Runtime.scope()` opens one for an agent run (`Runtime.execute`) and for a task run
(`durable/runner.py`) alike, so both are admitted, counted, drained and interrupted the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter

from agentkeep.errors import AgentkeepError, RunFailed
from agentkeep.failures import Detached
from agentkeep.hooks import Hook, RunOutcome, RunState
from agentkeep.observability.steps import joined_steps, steps_json
from agentkeep.stores.base import RunRecord, RunStatus
from agentkeep.tools.scope import bound_to

if TYPE_CHECKING:  # an annotation only: importing the run lifecycle does not load SQLAlchemy
    from agentkeep.stores.sql import SQLStore

__all__ = ["ActiveRuns", "RunScope", "failure_status", "record_failure", "run_scope", "shielded"]

log = structlog.get_logger("agentkeep.runtime")

_T = TypeVar("_T")


class ActiveRuns:
    """The runs executing in this process, for backpressure, drain and `interrupt()`."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._running: set[asyncio.Task[Any]] = set()  # the tasks executing runs, for `interrupt()`
        self._interrupted: set[asyncio.Task[Any]] = set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    def interrupt(self) -> int:
        """Cancel every run executing here; returns how many were running."""
        tasks = list(self._running)
        for task in tasks:
            self._interrupted.add(task)
            task.cancel("agentkeep: drain timeout")
        return len(tasks)

    def took_interrupt(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether `interrupt()` cancelled `task`; if so the cancellation is taken back (`uncancel`),
        as the run was only cancelled to stop it and reports that itself. Ask once per run."""
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

    @asynccontextmanager
    async def slot(self, *, held: bool) -> AsyncIterator[asyncio.Task[Any] | None]:
        """Count the current task as a run (unless its slot is `held` already) until the block ends."""
        if not held:
            self.enter()
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            yield task
        finally:
            if task is not None:
                self._running.discard(task)
                self._interrupted.discard(task)
            self.leave()


@dataclass(eq=False)
class RunScope:
    """One run executing in this process; see the module docstring. Opened by `run_scope()`."""

    record: RunRecord
    state: RunState
    hooks: Sequence[Hook]
    store: SQLStore
    active: ActiveRuns
    task: asyncio.Task[Any] | None
    durable: bool = False  # checkpointed: interrupted or detached, it records nothing
    resumed: bool = False  # a durable run executing again after a crash, a drain or a takeover
    since: float | None = None  # UNIX time its duration counts from, when not this execution's start
    # A run resumed after waiting for tool decisions: the time it ran and the steps it took before.
    prior_ms: float = 0.0
    prior_steps: bytes | None = None
    outcome: RunOutcome = field(default_factory=lambda: RunOutcome(RunStatus.FAILED.value))
    _cut: bool | None = None

    async def before_run(self) -> None:
        """The hooks' `before_run`; any may refuse the run (raise), except a resumed one's."""
        for hook in self.hooks:
            try:
                await hook.before_run(self.state)
            except AgentkeepError as exc:
                if not self.resumed:  # admitted when it started; its next model request still meets every check
                    raise
                log.info("run.resumed_despite_refusal", run_id=self.state.run_id, refusal=exc.type)

    def interrupted_here(self, exc: BaseException) -> bool:
        """Whether `exc` is this process's `interrupt()` reaching the run (a drain out of time)."""
        if self._cut is None:
            self._cut = isinstance(exc, asyncio.CancelledError) and self.active.took_interrupt(self.task)
        return self._cut

    def detaches(self, exc: BaseException) -> bool:
        """Whether `exc` leaves this durable run unfinished for a later execution, recording nothing."""
        return self.durable and (isinstance(exc, Detached) or self.interrupted_here(exc))

    async def succeed(self, output: Any, messages: list[ModelMessage] | None = None) -> bool:
        """Record the run succeeded with `output` (a JSON value), appending `messages` to its session when given.

        False when a cancel was recorded first: the run then stays `cancelled`, its answer not kept."""
        record = self.record
        record.status, record.output = RunStatus.SUCCEEDED, output
        self._fill()
        record.messages_json = None if messages is None else ModelMessagesTypeAdapter.dump_json(messages)
        kept = await shielded(self.store.finish_run(record, append_to_session=record.messages_json))
        self.outcome = (
            RunOutcome(RunStatus.SUCCEEDED.value) if kept else RunOutcome(RunStatus.CANCELLED.value, "cancelled")
        )
        return kept

    async def wait(
        self, pending: list[dict[str, Any]], deferred: bytes, messages: list[ModelMessage], until: float, lease_s: float
    ) -> bool:
        """Record the run waiting for decisions on its `pending` calls until `until`, with its
        `messages` so far and what it needs to continue (`deferred`), its session kept for it.

        False when a cancel was recorded first: the run then stays `cancelled`."""
        record = self.record
        record.status, record.pending, record.deferred_json, record.waiting_until = (
            RunStatus.WAITING_APPROVAL,
            pending,
            deferred,
            until,
        )
        self._fill()
        record.finished_at = None
        record.messages_json = ModelMessagesTypeAdapter.dump_json(messages)
        kept = await shielded(self.store.pause_run(record, until + lease_s))
        waiting = RunStatus.WAITING_APPROVAL.value
        self.outcome = RunOutcome(waiting) if kept else RunOutcome(RunStatus.CANCELLED.value, "cancelled")
        return kept

    async def fail(
        self, failure: RunFailed, error: BaseException | None = None, *, partial: list[ModelMessage] | None = None
    ) -> None:
        """Record the run ended by `failure` (caused by `error`), keeping `partial`, the messages it
        added so far, with the run rather than in its session."""
        self.outcome = RunOutcome(failure_status(failure), failure.error_type, error)
        self._fill()
        await record_failure(self.store, self.record, failure, partial=partial)

    def _fill(self) -> None:
        record, state = self.record, self.state
        record.finished_at = time.time()
        if self.since is not None:
            record.duration_ms = (record.finished_at - self.since) * 1000
        else:
            record.duration_ms = self.prior_ms + (time.monotonic() - state.started) * 1000
        record.usage, record.cost_usd = state.usage, state.cost_usd
        record.steps_json = joined_steps(self.prior_steps, steps_json(state))
        record.tools_used = list(state.tools_used)


@asynccontextmanager
async def run_scope(
    active: ActiveRuns,
    store: SQLStore,
    record: RunRecord,
    state: RunState,
    hooks: Sequence[Hook],
    *,
    durable: bool = False,
    resumed: bool = False,
    holds_slot: bool = False,
    since: float | None = None,
) -> AsyncIterator[RunScope]:
    """Open the `RunScope` of `record`'s run on the current task (`Runtime.scope()` calls this)."""
    # The file tools act in this run's folder: the same user and session on every execution of it.
    async with active.slot(held=holds_slot) as task:
        with bound_to(record.user_id, record.session_id):
            scope = RunScope(record, state, hooks, store, active, task, durable, resumed, since)
            try:
                yield scope
            except BaseException as exc:
                if scope.detaches(exc):
                    scope.outcome = RunOutcome(RunStatus.INTERRUPTED.value, "interrupted", exc)
                    raise Detached() from None
                raise
            finally:
                for hook in scope.hooks:
                    await hook.after_run(state, scope.outcome)


async def record_failure(
    store: SQLStore, record: RunRecord, failure: RunFailed, *, partial: list[ModelMessage] | None = None
) -> None:
    """Write `record` (its `finished_at` set) ended by `failure` and free its session; nothing is
    appended to the session."""
    record.status = RunStatus(failure_status(failure))
    record.error_type, record.error_message = failure.error_type, failure.message
    record.messages_json = ModelMessagesTypeAdapter.dump_json(partial) if partial else None
    await shielded(store.finish_run(record, append_to_session=None))


def failure_status(failure: RunFailed) -> str:
    """The run status a failure is recorded with: `cancelled`, `interrupted`, else `failed`."""
    stopped = {"cancelled": RunStatus.CANCELLED, "interrupted": RunStatus.INTERRUPTED}
    return stopped.get(failure.error_type, RunStatus.FAILED).value


async def shielded(work: Awaitable[_T]) -> _T:
    """Persist even when the caller is being cancelled: an acknowledged outcome must be written."""
    return await asyncio.shield(asyncio.ensure_future(work))
