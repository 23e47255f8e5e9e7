"""Schedules: `[[schedules]]` in agentkeep.toml run an agent with a fixed message, or a task, on a cron.

    [[schedules]]
    name = "morning-report"
    cron = "0 7 * * 1-5"              # 5 fields, or 6 with seconds first; UTC unless timezone = "..."
    agent = "assistant"
    message = "Write the morning report."

    [[schedules]]
    name = "weekly-research"
    cron = "0 6 * * 1"
    task = "research"
    input = { topic = "what changed in our field this week" }

Each process that executes background runs writes the configured schedules into DBOS's schedule
table when it starts (one name per schedule, prefixed `agentkeep:`; schedules removed from the
file are deleted). DBOS's scheduler starts workflow `agentkeep.scheduled` once per tick under the
id `sched-agentkeep:NAME-TIME`, so however many processes run it, a tick happens once. That workflow
records the tick's run (a deterministic run id, in a step, built by the runtime like any run's
record) and queues it like any background run: it is visible at `GET /v1/runs/{run_id}` to the
schedule's `user`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime

import structlog

from agentkeep.config import Schedule
from agentkeep.durable.tasks import TASKS, task_record
from agentkeep.errors import ConfigError, SessionBusy
from agentkeep.runtime import Runtime
from agentkeep.stores.base import RunRecord

__all__ = ["PREFIX", "Enqueue", "Scheduler", "check_schedules"]

log = structlog.get_logger("agentkeep.durable")

PREFIX = "agentkeep:"

Enqueue = Callable[[RunRecord, str], Awaitable[None]]
"""`DurableEngine.enqueue`: queue a recorded run as the named workflow."""


class Scheduler:
    """Applies the configured schedules to DBOS, and turns each tick into a queued run."""

    def __init__(self, runtime: Runtime, schedules: list[Schedule], enqueue: Enqueue) -> None:
        self.runtime = runtime
        self.schedules = {entry.name: entry for entry in schedules}
        self.enqueue = enqueue

    async def apply(self) -> None:
        """Make DBOS's schedule table match the configuration."""
        from dbos import DBOS

        from agentkeep.durable.workflows import scheduled_workflow

        wanted = [
            {
                "schedule_name": PREFIX + entry.name,
                "workflow_fn": scheduled_workflow,
                "schedule": entry.cron,
                "context": entry.name,
                "cron_timezone": entry.timezone,
            }
            for entry in self.schedules.values()
        ]
        try:
            if wanted:
                await DBOS.apply_schedules_async(wanted)  # type: ignore[arg-type]  # ScheduleInput dicts
        except Exception as exc:
            raise ConfigError(f"the schedules in agentkeep.toml are not valid: {exc}") from None
        for existing in await DBOS.list_schedules_async(schedule_name_prefix=PREFIX):
            if existing["schedule_name"].removeprefix(PREFIX) not in self.schedules:
                await DBOS.delete_schedule_async(existing["schedule_name"])

    async def fire(self, name: str, scheduled_at: datetime) -> str:
        """The body of workflow `agentkeep.scheduled`: record this tick's run and queue it."""
        from dbos import DBOS

        entry = self.schedules.get(name)
        if entry is None:  # removed from this version's configuration since
            return "unscheduled"
        # One run id per tick, so a replay of this workflow finds the run it recorded.
        run_id = "run_" + hashlib.sha256(f"{DBOS.workflow_id}".encode()).hexdigest()[:24]
        record = await DBOS.run_step_async({"name": "record"}, self._record, entry, run_id, scheduled_at)
        if record is None:
            return "skipped"
        await self.enqueue(record, "task_workflow" if entry.task else "run_workflow")
        return record.run_id

    async def _record(self, entry: Schedule, run_id: str, scheduled_at: datetime) -> RunRecord | None:
        runtime = self.runtime
        existing = await runtime.store.get_run(entry.user, run_id)
        if existing is not None:
            return existing
        metadata = {"schedule": entry.name, "scheduled_at": scheduled_at.isoformat()}
        if entry.task is not None:
            record = task_record(runtime, entry.task, entry.input, entry.user, None, run_id=run_id)
            record.metadata = {**record.metadata, **metadata}
            await runtime.store.create_run(record)
            return record
        record = runtime.new_record(
            agent=entry.agent or runtime.default_agent,
            input=entry.message or "",
            user_id=entry.user,
            background=True,
            session_id=entry.session_id,
            run_id=run_id,
            metadata=json.loads(json.dumps(metadata)),
        )
        try:
            await runtime.store.start_run(record, runtime.lease_s)
        except SessionBusy:
            log.warning("schedule.skipped", schedule=entry.name, reason="its session is busy with another run")
            return None
        return record


def check_schedules(schedules: list[Schedule], agents: Collection[str]) -> None:
    """Refuse, before serving, schedules that share a name, name an unknown agent or task, or have a bad cron."""
    if not schedules:
        return
    from croniter import croniter  # type: ignore[import-untyped]  # a dependency of dbos, without stubs

    if len({entry.name for entry in schedules}) != len(schedules):
        raise ConfigError("two schedules share a name: each needs its own")
    for entry in schedules:
        if entry.task is not None and entry.task not in TASKS:
            raise ConfigError(f"schedule {entry.name!r}: no task named {entry.task!r}")
        if entry.agent is not None and entry.agent not in agents:
            raise ConfigError(f"schedule {entry.name!r}: no agent named {entry.agent!r}")
        if not croniter.is_valid(entry.cron, second_at_beginning=True):
            raise ConfigError(f"schedule {entry.name!r}: {entry.cron!r} is not a cron expression")
