"""Background work inside a time box: execute queued and interrupted runs until a deadline, then
stop every run at a step boundary so the next time box resumes it from its last checkpoint.

For hosts that give a process a fixed slice of time (an AWS Lambda invocation), where the worker
loop of `agentkeep worker` cannot run forever:

    drain_until(engine, stop_at, hard_stop_at)
        start the engine       DBOS launch resumes this executor's unfinished runs; the upkeep's
                               first pass takes over runs other time boxes left (takeover.py); the
                               queue hands out queued runs
        until stop_at          or until nothing is queued, running or left to resume
        close the step gate    a step that has not started by now raises `Detached` instead: the
                               run records nothing and stays unfinished in DBOS, with every step it
                               finished checkpointed. A step already running finishes and is
                               checkpointed (hard_stop_at bounds the wait)
        stop the engine        heartbeat retired, so the next time box, here or elsewhere, takes
                               the runs over at once

The gate sits on `DBOS.run_step_async`, the one call every step of a run or a task goes through,
and only while `drain_until` runs (`_dbos.intercept_steps`). The second half of a tool call
(`tool:NAME`, after its `tool_started:NAME` marker) always runs: stopping between the two would
make a resumed run treat the tool as cut mid-call (checkpoints.py). So no step is executed twice,
as long as the step in flight at `stop_at` ends before `hard_stop_at`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from agentkeep.durable.engine import DurableEngine, abandon_launch
from agentkeep.durable.setup import QUEUE
from agentkeep.failures import Detached

if TYPE_CHECKING:
    from agentkeep.durable._dbos import StepCall

__all__ = ["DrainReport", "StepGate", "drain_until"]

log = structlog.get_logger("agentkeep.durable")

_POLL_S = 0.1
# Consecutive polls that must find nothing to do before an early return: a run that DBOS is
# about to recover or dequeue is not visible in every poll.
_IDLE_POLLS = 5
# How long cancelled steps get to unwind before the engine stops anyway.
_CUT_GRACE_S = 1.0


@dataclass
class DrainReport:
    """What one time box did."""

    steps_started: int = 0
    steps_refused: int = 0
    stopped_early: bool = False  # True: the work ran out before the deadline
    duration_s: float = 0.0


class StepGate:
    """Counts the durable steps that start in this process and, once closed, refuses new ones."""

    def __init__(self) -> None:
        self.closed = False
        self.in_flight = 0
        self.report = DrainReport()
        self.running: set[asyncio.Task[Any]] = set()  # the runs' tasks with a step in flight

    @contextlib.contextmanager
    def installed(self) -> Iterator[StepGate]:
        """Route every `DBOS.run_step_async` call through this gate until the block ends."""
        from agentkeep.durable._dbos import intercept_steps

        with intercept_steps(self._step):
            yield self

    async def _step(
        self, run_step: StepCall, options: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """One step of a workflow: refused once the gate is closed (but the second half of a tool call)."""
        from dbos import DBOS

        if DBOS.workflow_id is None:
            return await run_step(options, func, *args, **kwargs)
        name = str((options or {}).get("name") or "")
        if self.closed and not name.startswith("tool:"):
            self.report.steps_refused += 1
            raise Detached()
        self.in_flight += 1
        self.report.steps_started += 1
        task = asyncio.current_task()
        if task is not None:
            self.running.add(task)
        try:
            return await run_step(options, func, *args, **kwargs)
        finally:
            self.in_flight -= 1
            if task is not None:
                self.running.discard(task)


async def drain_until(engine: DurableEngine, stop_at: float, hard_stop_at: float) -> DrainReport:
    """Execute background runs until `stop_at`, then stop them at a step boundary (times are
    `time.monotonic()`); the engine is started here and stopped before this returns."""
    started = time.monotonic()
    gate = StepGate()
    with gate.installed():
        try:
            await engine.start()
            gate.report.stopped_early = await _work_until(engine, stop_at)
        finally:
            gate.closed = True
            await _stop(engine, gate, hard_stop_at)
    gate.report.duration_s = round(time.monotonic() - started, 3)
    log.info("durable.time_box_done", **vars(gate.report))
    return gate.report


async def _stop(engine: DurableEngine, gate: StepGate, hard_stop_at: float) -> None:
    """Let the steps in flight finish (or cut them at `hard_stop_at`), then stop the engine, so
    nothing of this time box runs on after it, even when the engine failed to start."""
    if engine.started:
        engine.begin_drain()
        if not await _settled(gate, hard_stop_at):
            await _cut(engine, gate)
        await engine.stop()  # gives the loop, which outlives this time box, a working executor back
    else:  # a launch that failed half-way must not leave DBOS to the next box
        abandon_launch()


async def _work_until(engine: DurableEngine, stop_at: float) -> bool:
    """Wait while there is work, up to `stop_at`; True when the work ran out first."""
    idle = 0
    while time.monotonic() < stop_at:
        idle = 0 if await _has_work(engine) else idle + 1
        if idle >= _IDLE_POLLS:
            return True
        await asyncio.sleep(min(_POLL_S, max(0.0, stop_at - time.monotonic())))
    return False


async def _has_work(engine: DurableEngine) -> bool:
    """Whether a run executes here, waits in the queue, or is left unfinished by this executor."""
    from dbos import DBOS

    if _active_here():
        return True
    queued = await DBOS.list_workflows_async(
        status=["ENQUEUED"],
        queue_name=QUEUE,
        app_version=engine.me.version,  # another version's runs are not this executor's to take
        limit=1,
        load_input=False,
        load_output=False,
    )
    if queued:
        return True
    mine = await DBOS.list_workflows_async(
        status=["PENDING"], executor_id=engine.me.executor_id, limit=1, load_input=False, load_output=False
    )
    return bool(mine)


async def _settled(gate: StepGate, hard_stop_at: float) -> bool:
    """Wait for the steps in flight to be checkpointed and the runs to leave; False past `hard_stop_at`."""
    while gate.in_flight or _active_here():
        if time.monotonic() >= hard_stop_at:
            return False
        await asyncio.sleep(0.02)
    return True


async def _cut(engine: DurableEngine, gate: StepGate) -> None:
    """Out of time with steps still running: cancel them, unrecorded, so that none finishes after
    the engine stopped; each runs again when its run resumes."""
    log.warning("durable.time_box_overrun", steps_in_flight=gate.in_flight)
    engine.runtime.interrupt()  # a durable run, agent or task, records nothing when interrupted (Detached)
    tasks = set(gate.running)
    for task in tasks:
        task.cancel("agentkeep: time box over")
    if tasks:
        await asyncio.wait(tasks, timeout=_CUT_GRACE_S)


def _active_here() -> int:
    from agentkeep.durable._dbos import active_workflows

    return active_workflows()
