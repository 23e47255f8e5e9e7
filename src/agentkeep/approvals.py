"""Runs waiting for a decision on a tool call: their resume, their cancel, and their deadline.

A run whose tool call needs a decision (`agentkeep.deferred`) ends its execution `waiting_approval`,
its state in the database and its session kept (`stores.waiting`). From there, on any process:

    prepare_resume()   POST /v1/runs/{id}/resume: the answers checked against the pending calls
                       (400 for an unknown or unanswered one), the run admitted like a new one, then
                       moved on once (409 `not_waiting` to a second resume); `Runtime.execute` runs
                       the rest synchronously or streamed, a background resume is queued by the
                       durable engine (`DurableEngine.submit_resume`)
    close()            POST /v1/runs/{id}/cancel, or the deadline: every pending call answered as
                       denied in the session, which a next run continues from; the run `cancelled`
    Expiry             AGENTKEEP_APPROVAL_TIMEOUT_S: a timer in every process, durable engine or
                       not (as the budget's reclaimer), closing the waiting runs past their
                       deadline; processes racing on one run close it once

A background run's webhook hears of a wait's end here through `announce` (the durable engine's).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import structlog
from pydantic_ai.messages import ModelMessagesTypeAdapter

from agentkeep.deferred import Pending
from agentkeep.errors import NotWaiting
from agentkeep.runtime import PreparedRun, Runtime
from agentkeep.stores.base import RunRecord, RunStatus
from agentkeep.transcript import load_chunks

__all__ = ["Approvals", "Expiry"]

log = structlog.get_logger("agentkeep.approvals")

Announce = Callable[[RunRecord], Awaitable[None]]

_CANCELLED = ("the run was cancelled while it waited for a tool decision", "the run was cancelled")
_TIMED_OUT = (
    "no decision on its tool calls came within AGENTKEEP_APPROVAL_TIMEOUT_S; the run was cancelled",
    "no decision came in time",
)


class Approvals:
    """The waiting runs of `runtime`'s store; see the module docstring."""

    def __init__(self, runtime: Runtime, *, announce: Announce | None = None) -> None:
        self.runtime = runtime
        self.announce = announce

    async def prepare_resume(
        self, record: RunRecord, approvals: Mapping[str, Any], results: Mapping[str, Any], *, background: bool
    ) -> PreparedRun:
        """`record`'s run, moved on with these answers and holding its session, ready for
        `Runtime.execute` (or, `background`, queued for the durable engine)."""
        if record.status is not RunStatus.WAITING_APPROVAL:
            raise NotWaiting(f"run {record.run_id!r} is {record.status.value}, not waiting for a tool decision")
        if record.waiting_until is not None and record.waiting_until < time.time():
            await self.close(record, timed_out=True)
            raise NotWaiting(f"run {record.run_id!r} waited past AGENTKEEP_APPROVAL_TIMEOUT_S and was cancelled")
        pending = Pending.load(record.deferred_json or b"")
        pending.decisions = pending.decide(approvals, results)
        runtime = self.runtime
        holds_slot = await runtime.admit_run(record.agent, record.user_id, record.session_id, background=background)
        try:
            resumed = replace(
                record,
                status=RunStatus.QUEUED if background else RunStatus.RUNNING,
                background=background,
                deferred_json=pending.dump(),
                pending=None,
                waiting_until=None,
                resumes=record.resumes + 1,
            )
            history = await runtime.store.resume_run(resumed, runtime.lease_s)
            if history is None:
                raise NotWaiting(f"run {record.run_id!r} was resumed or cancelled meanwhile")
            return PreparedRun(resumed, load_chunks(history), holds_slot)
        except BaseException:
            if holds_slot:
                runtime.active.leave()
            raise

    async def close(self, record: RunRecord, *, timed_out: bool = False) -> RunRecord:
        """End a waiting run `cancelled`, its pending calls denied in its session; the run as it is
        afterwards (as another process left it, if that one moved it on first)."""
        closed = await self._close(record, timed_out)
        return closed or await self.runtime.store.get_run(record.user_id, record.run_id) or record

    async def _close(self, record: RunRecord, timed_out: bool) -> RunRecord | None:
        message, reason = _TIMED_OUT if timed_out else _CANCELLED
        pending = Pending.load(record.deferred_json or b"")
        earlier = load_chunks([record.messages_json]) if record.messages_json else []
        closing = ModelMessagesTypeAdapter.dump_json(pending.closing(earlier, f"The tool call was denied: {reason}."))
        closed = replace(
            record,
            status=RunStatus.CANCELLED,
            error_type="cancelled",
            error_message=message,
            finished_at=time.time(),
            pending=None,
            waiting_until=None,
            messages_json=closing,
        )
        if not await self.runtime.store.close_waiting(closed, append_to_session=closing):
            return None
        log.info("run.wait_closed", run_id=record.run_id, timed_out=timed_out)
        if self.announce is not None and closed.webhook_url is not None:
            await self.announce(closed)
        return closed

    async def expire(self) -> int:
        """Close every waiting run past its deadline; how many this process closed."""
        closed = 0
        while batch := await self.runtime.store.expired_waiting(time.time()):
            for record in batch:
                closed += await self._close(record, timed_out=True) is not None
            if len(batch) < 100:
                break
        return closed


class Expiry:
    """A timer, not a task between its passes (as `budget.Reclaimer`): `start` on the running loop."""

    def __init__(self, approvals: Approvals, timeout_s: float) -> None:
        self.approvals = approvals
        # Often enough that a run is closed soon after its deadline, and well within its lease's margin.
        self.interval_s = min(60.0, max(0.5, timeout_s / 4))
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        if self._timer is None and not self._stopped:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._beat)

    def _beat(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pass())

    async def _pass(self) -> None:
        try:
            closed = await self.approvals.expire()
        except Exception as exc:  # the database may be back by the next pass
            log.warning("approval_expiry_failed", error=type(exc).__name__)
        else:
            if closed:
                log.info("approvals_timed_out", runs=closed)
        if not self._stopped:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._beat)

    async def stop(self) -> None:
        """No pass after this; one in flight is let finish, so it does not outlive the database."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
