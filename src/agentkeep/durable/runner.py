"""The bodies of the two run workflows, each executing its run in the runtime's run scope.

    resume_run()   workflow `agentkeep.run`: a background agent run. Its first step marks it
                   running; it claims its session again (the lease taken at `POST /v1/runs` may
                   have lapsed in the queue), then `Runtime.execute` runs it with `DurableSteps`
                   outermost, so each model request and tool call is a checkpoint
    run_task()     workflow `agentkeep.task`: the same first step, then the task's function in
                   `Runtime.scope()`, its `ask()` calls going through the scope's hooks

Started for the first time or resumed after a crash, a drain or a takeover, both take an active-run
slot, are drained and interrupted like any run, and record their outcome once; interrupted here or
detached by a checkpoint they record nothing (`Detached`) and a later execution resumes them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pydantic_ai import Agent
from pydantic_core import to_jsonable_python

from agentkeep.durable.asking import CURRENT, TaskContext
from agentkeep.durable.tasks import TASKS, task_failure
from agentkeep.errors import RunFailed
from agentkeep.failures import CancelRequested
from agentkeep.hooks import Hook, RunOutcome
from agentkeep.lifecycle import RunScope
from agentkeep.runtime import PreparedRun, Runtime
from agentkeep.stores.base import RunRecord, RunStatus
from agentkeep.transcript import load_chunks

__all__ = ["Runner"]

_SESSION_POLL_S = 0.5


class Runner:
    """Executes background agent runs and task runs on `runtime`, with `steps` (the checkpoints) outermost."""

    def __init__(self, runtime: Runtime, steps: Hook) -> None:
        self.runtime = runtime
        self.steps = steps

    async def resume_run(self, run_id: str, user_id: str) -> str:
        """Execute (or resume) a background agent run; return its final status. Raises `Detached`
        to leave it unfinished."""
        begun = await self._begin(run_id, user_id)
        if isinstance(begun, str):
            return begun
        record, resumed = begun
        history = await self._claim_session(record)
        if history is None:
            return record.status.value
        try:
            # Steps are numbered in the order they start: tool calls in parallel could swap numbers.
            with Agent.parallel_tool_call_execution_mode("sequential"):
                await self.runtime.execute(
                    PreparedRun(record, load_chunks(history)), durable=[self.steps], resumed=resumed
                )
        except RunFailed:
            pass  # recorded by the runtime
        return record.status.value

    async def run_task(self, run_id: str, user_id: str) -> str:
        """Execute (or resume) a task run; return its final status. Raises `Detached` to leave it unfinished."""
        begun = await self._begin(run_id, user_id)
        if isinstance(begun, str):
            return begun
        record, resumed = begun
        # A task's duration counts from its first start, across resumes.
        async with self.runtime.scope(record, durable=[self.steps], resumed=resumed, since=record.started_at) as run:
            run.outcome = RunOutcome(RunStatus.INTERRUPTED.value, "interrupted")  # unless it ends below
            token = CURRENT.set(TaskContext(self.runtime, run.state, run.hooks))
            try:
                await self._run_task(run)
            finally:
                CURRENT.reset(token)
        return record.status.value

    async def _run_task(self, run: RunScope) -> None:
        record = run.record
        fn = TASKS.get(record.metadata.get("task", ""))
        try:
            await run.before_run()
            if fn is None:
                raise RunFailed("internal_error", f"task {record.metadata.get('task')!r} is not declared here")
            output: Any = await fn(json.loads(record.input))
        except (Exception, CancelRequested) as exc:
            await run.fail(task_failure(exc), exc)
            return
        await run.succeed(to_jsonable_python(output, fallback=str))  # its output as JSON, as an agent run's

    async def _begin(self, run_id: str, user_id: str) -> tuple[RunRecord, bool] | str:
        """The first step of a run workflow: mark the run running, once. Returns the record and
        whether this execution resumes it; or, for a run that will not execute, its status."""
        from dbos import DBOS

        record = await self.runtime.store.get_run(user_id, run_id)
        if record is None or record.status.finished:  # pruned, or cancelled while queued
            return record.status.value if record else "missing"
        started_now = False

        async def run_started() -> float | None:
            nonlocal started_now
            started_now = True
            return await self.runtime.store.mark_running(record.run_id)

        started_at = await DBOS.run_step_async({"name": "run_started"}, run_started)
        if started_at is None:  # cancelled between the dequeue and here
            return RunStatus.CANCELLED.value
        record.status, record.started_at = RunStatus.RUNNING, started_at
        return record, not started_now

    async def _claim_session(self, record: RunRecord) -> list[bytes] | None:
        """Take the run's session, waiting while a run that started meanwhile still holds it."""
        deadline = time.monotonic() + self.runtime.settings.run_timeout_s
        while (history := await self.runtime.store.claim_session(record, self.runtime.lease_s)) is None:
            if time.monotonic() > deadline:
                busy = RunFailed(
                    "run_timeout", "the run's session stayed busy with another run past the run's deadline"
                )
                await self.runtime.fail(record, busy)
                return None
            await asyncio.sleep(_SESSION_POLL_S)
        return history
