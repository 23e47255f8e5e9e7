"""`DurableEngine`: background runs as DBOS workflows, one per run, queued per user.

    POST /v1/runs {background}  → Runtime.prepare() records the run (queued) and claims its session
                                → submit(): enqueue workflow `agentkeep.run`(run_id, user_id) under
                                  workflow id = run id, partition key = user id
    POST /v1/tasks/{name}       → submit_task(): admitted and recorded by the runtime, enqueued as
                                  workflow `agentkeep.task`
    a process that dequeues     → Runner.resume_run() / Runner.run_task() (runner.py): mark it
                                  running (a step), then run it in the runtime's run scope with
                                  `DurableSteps` (checkpoints.py) outermost
    kill -9, restart            → DBOS.launch() resumes this executor's unfinished runs; each
                                  finished step returns its checkpoint instead of running again
    POST /v1/runs/{id}/cancel   → cancel(): the run stops at its next step boundary
    POST /v1/runs/{id}/resume   → submit_resume(): a run that waited for tool decisions continues
      {background}                as a new workflow of the same run, id `RUN_ID~rN` (its Nth resume)

The queue limits how many runs one process executes (AGENTKEEP_WORKER_CONCURRENCY) and how many
of one user's runs execute at once across the fleet (AGENTKEEP_USER_CONCURRENCY), so one user
cannot starve the rest. DBOS is imported in `start()` only: a process that serves only
synchronous runs never loads it. DBOS is a process singleton, so there is one engine per process;
`start()` registers what executes each workflow (`workflows.REGISTRY`).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from agentkeep.api_models import RunOut, run_view
from agentkeep.config import Settings
from agentkeep.durable.runner import Runner
from agentkeep.durable.schedules import Scheduler
from agentkeep.durable.setup import QUEUE, Identity, dbos_config, route_dbos_logs, system_database_url
from agentkeep.durable.takeover import Takeover
from agentkeep.durable.tasks import task_record
from agentkeep.durable.upkeep import FileSweep, Upkeep
from agentkeep.durable.webhooks import RETRY, WebhookFailed, WebhookSender
from agentkeep.errors import ConfigError, RunFailed
from agentkeep.resilience.retry import exponential_backoff
from agentkeep.runtime import PreparedRun, Runtime
from agentkeep.stores.base import RunRecord, RunStatus
from agentkeep.worker import WorkerLoop

__all__ = ["DurableEngine", "abandon_launch"]

log = structlog.get_logger("agentkeep.durable")

_CANCEL_WAIT_S = 3.0
_QUEUE_POLL_S = 0.2
_UPKEEP_DRAIN_S = 5.0


class DurableEngine:
    """The process's durable engine; `dequeue=False` (`serve --no-worker`) only enqueues and cancels."""

    def __init__(self, settings: Settings, runtime: Runtime, me: Identity, *, dequeue: bool = True) -> None:
        self.settings = settings
        self.runtime = runtime
        self.me = me
        self.dequeue = dequeue
        self.webhooks = WebhookSender(settings)
        self.scheduler = Scheduler(runtime, settings.schedules, self.enqueue)
        self.takeover = Takeover(runtime.store, me, settings.recovery_s)
        files = FileSweep(settings, runtime.store)
        self.upkeep = Upkeep(self.takeover, runtime.store, settings.run_retention_days, files=files)
        self.loop = WorkerLoop(self.upkeep.step, idle_s=self.takeover.interval_s, backoff_cap_s=settings.recovery_s / 2)
        self.started = False
        self._lock = asyncio.Lock()

    @staticmethod
    def available() -> bool:
        """Whether DBOS is installed (the `durable` extra)."""
        return importlib.util.find_spec("dbos") is not None

    def needed_now(self) -> bool:
        """Whether a `serve` process starts the engine at once rather than at its first background run.

        At once on PostgreSQL (a fleet: other workers' runs may need taking over), with schedules,
        or once this SQLite database has had background work (there may be runs to resume); else a
        process that only ever serves synchronous runs never loads DBOS.
        """
        url = system_database_url(self.settings.database_url.get_secret_value())
        if not url.startswith("sqlite:///") or self.settings.schedules:
            return True
        return Path(url.removeprefix("sqlite:///")).exists()

    # --- life cycle ---

    async def start(self) -> None:
        """Import and launch DBOS on this event loop (workflows run on the loop that launched it)."""
        async with self._lock:
            if self.started:
                return
            if not self.available():
                raise ConfigError("background runs need the durable extra: pip install 'agentkeep[durable]'")
            t0 = time.perf_counter()
            # The import is the slow part (~0.3 s): off the loop, so requests keep being served.
            workflows = await asyncio.to_thread(importlib.import_module, "agentkeep.durable.workflows")
            from dbos import DBOS

            from agentkeep.durable.checkpoints import DurableSteps

            runner = Runner(self.runtime, DurableSteps())
            workflows.REGISTRY.register(
                workflows.WorkflowBodies(
                    resume_run=runner.resume_run,
                    run_task=runner.run_task,
                    deliver_webhook=self.deliver_webhook,
                    fire_schedule=self.scheduler.fire,
                    notify=self.notify,
                )
            )
            route_dbos_logs()
            config = dbos_config(self.settings, self.me)
            # Schema changes (and their locks) off the loop; launch() then only reads and registers.
            await asyncio.to_thread(DBOS.migrate, config["system_database_url"])
            DBOS(config=config)  # type: ignore[arg-type]  # a DBOSConfig
            if not self.dequeue:
                DBOS.listen_queues([])
            DBOS.launch()  # on this loop, which then runs the workflows; resumes this executor's runs
            concurrency = self.settings.worker_concurrency or self.settings.max_concurrent_runs
            await DBOS.register_queue_async(
                QUEUE,
                worker_concurrency=concurrency,
                partition_concurrency=self.settings.user_concurrency,
                polling_interval_sec=_QUEUE_POLL_S,
            )
            if self.dequeue:
                await self.scheduler.apply()
                await self._warn_stale()
            self.started = True
            if self.dequeue:
                self.loop.start()
            log.info(
                "durable.started",
                executor_id=self.me.executor_id,
                version=self.me.version,
                dequeue=self.dequeue,
                start_ms=round((time.perf_counter() - t0) * 1000, 1),
            )

    async def start_when_possible(self) -> None:
        """`serve`'s start of the engine, off the path to readiness: a database that fails while the
        engine launches (a blip, a failover) is retried with backoff instead of ending the process;
        a configuration mistake still ends it. Gives up quietly once the process drains."""
        attempt = 0
        while not self.loop.draining:
            try:
                await self.start()
                return
            except ConfigError:
                raise
            except Exception as exc:
                attempt += 1
                delay = exponential_backoff(attempt, base=0.5, cap=max(1.0, self.settings.recovery_s / 2))
                log.warning(
                    "durable.start_failed", attempt=attempt, retry_in_s=round(delay, 1), exc_type=type(exc).__name__
                )
                abandon_launch()
                await asyncio.sleep(delay)

    async def _warn_stale(self) -> None:
        from agentkeep.durable.upgrade import stale  # imports dbos

        left = await stale(self.me.version)
        if left:
            log.warning(
                "durable.runs_of_other_versions",
                runs=len(left),
                hint="resume them on this version with `agentkeep runs resume TARGET`, or cancel them",
            )

    def begin_drain(self) -> None:
        """Dequeue nothing more: a draining process only finishes what it holds."""
        self.loop.begin_drain()
        if self.started:
            from agentkeep.durable._dbos import stop_dequeuing

            stop_dequeuing()

    async def stop(self) -> None:
        """Shut DBOS down. Runs still executing stay unfinished in DBOS: the next process resumes them."""
        if not self.started:
            return
        from dbos import DBOS

        self.started = False
        await self.loop.drain(_UPKEEP_DRAIN_S)
        if self.dequeue:
            try:
                await self.takeover.retire()
            except Exception as exc:  # the database may be what is failing; the heartbeat lapses anyway
                log.warning("durable.retire_failed", exc_info=exc)
        await asyncio.to_thread(DBOS.destroy, workflow_completion_timeout_sec=0)
        _give_back_executor()

    # --- the API's side ---

    async def submit(self, prepared: PreparedRun) -> None:
        """Queue a prepared background run; on failure record it failed and free its session."""
        await self.enqueue(prepared.record, "run_workflow")

    async def submit_resume(self, prepared: PreparedRun) -> None:
        """Queue the rest of a run that waited for tool decisions (`Approvals.prepare_resume`): a
        workflow of its own, as the first one ended with the wait."""
        record = prepared.record
        await self.enqueue(record, "run_workflow", workflow_id=f"{record.run_id}~r{record.resumes}")

    async def submit_task(
        self, name: str, task_input: dict[str, Any], user_id: str, webhook_url: str | None
    ) -> RunRecord:
        """Admit, record and queue a run of task `name`; `NotFound` for an unknown task."""
        record = task_record(self.runtime, name, task_input, user_id, webhook_url)
        await self.runtime.admit_run(record.agent, user_id, record.session_id, background=True)
        await self.runtime.store.create_run(record)
        await self.enqueue(record, "task_workflow")
        return record

    async def enqueue(self, record: RunRecord, workflow: str, *, workflow_id: str | None = None) -> None:
        """Queue `record`'s run as `workflow` (a name in `workflows`) under `workflow_id` (default:
        the run id); on failure record it failed."""
        try:
            await self.start()
            from dbos import DBOS, SetEnqueueOptions, SetWorkflowID

            from agentkeep.durable import workflows

            with SetWorkflowID(workflow_id or record.run_id), SetEnqueueOptions(queue_partition_key=record.user_id):
                await DBOS.enqueue_workflow_async(QUEUE, getattr(workflows, workflow), record.run_id, record.user_id)
        except Exception as exc:
            log.error("durable.enqueue_failed", run_id=record.run_id, exc_info=exc)
            await self.runtime.fail(record, RunFailed("internal_error", "the run could not be queued"))
            raise RunFailed("internal_error", "the run could not be queued; retry shortly") from None

    async def cancel(self, record: RunRecord) -> RunRecord:
        """Cancel a run; return its record after the cancel.

        A queued run is cancelled at once. A running one stops at its next step boundary (a model
        request in flight is abandoned); when it has not recorded that within a few seconds (a slow
        tool, or its process is gone), the record is closed here and the run, if still alive,
        records the same when its step ends.
        """
        if record.status.finished:
            return record
        await self.start()
        from dbos import DBOS

        await DBOS.cancel_workflow_async(record.run_id)
        for fork in await DBOS.list_workflows_async(  # the run resumed on a newer version (upgrade.py)
            workflow_id_prefix=f"{record.run_id}~", status=["PENDING", "ENQUEUED"], load_input=False, load_output=False
        ):
            await DBOS.cancel_workflow_async(fork.workflow_id)
        store = self.runtime.store
        if not await store.cancel_run(record, only_queued=True) and not await self._stopped(record):
            await store.cancel_run(record, only_queued=False)
        # The run's own workflow cannot start the webhook any more: DBOS refuses work to a cancelled one.
        await self.notify(record.run_id, record.user_id)
        return await self.runtime.store.get_run(record.user_id, record.run_id) or record

    async def _stopped(self, record: RunRecord) -> bool:
        """Whether the run records its end within a few seconds."""
        deadline = time.monotonic() + _CANCEL_WAIT_S
        while time.monotonic() < deadline:
            fresh = await self.runtime.store.get_run(record.user_id, record.run_id)
            if fresh is None or fresh.status.finished:
                return True
            await asyncio.sleep(0.05)
        return False

    # --- completion webhooks ---

    async def notify(self, run_id: str, user_id: str) -> None:
        """Start the delivery of a finished run's webhook, once per run whoever asks (the id says so);
        also of a run that waits for tool decisions, once per wait."""
        record = await self.runtime.store.get_run(user_id, run_id)
        if record is None or record.webhook_url is None:
            return
        if record.status.finished:
            delivery = f"{run_id}-webhook"
        elif record.status is RunStatus.WAITING_APPROVAL:
            delivery = f"{run_id}-webhook-w{record.resumes}"
        else:
            return
        from dbos import DBOS, SetWorkflowID

        from agentkeep.durable.workflows import webhook_workflow

        with SetWorkflowID(delivery):
            await DBOS.start_workflow_async(webhook_workflow, run_id, user_id)

    async def announce(self, record: RunRecord) -> None:
        """Deliver the webhook of a run whose outcome was recorded outside its workflow (a wait
        cancelled or timed out, a resume run synchronously); nothing for a run without one."""
        if record.webhook_url is None:
            return
        try:
            await self.start()
            await self.notify(record.run_id, record.user_id)
        except Exception as exc:  # the outcome is recorded; only its webhook is lost
            log.warning("webhook.not_started", run_id=record.run_id, exc_info=exc)

    async def deliver_webhook(self, run_id: str, user_id: str) -> int:
        """The body of workflow `agentkeep.webhook`: one retried step; the receiver's status, or 0."""
        from dbos import DBOS

        record = await self.runtime.store.get_run(user_id, run_id)
        if record is None or record.webhook_url is None:
            return 0
        options: Any = {"name": "deliver", "retries_allowed": True, "should_retry": _retryable, **RETRY}
        # Exactly what GET /v1/runs/{id} answers, through the same response model.
        url, body = record.webhook_url, RunOut.model_validate(run_view(record)).model_dump(mode="json")
        try:
            status: int = await DBOS.run_step_async(options, self.webhooks.deliver, url, body)
        except Exception as exc:
            log.warning("webhook.undelivered", run_id=run_id, reason=str(exc.__cause__ or exc))
            return 0
        log.info("webhook.delivered", run_id=run_id, status=status)
        return status

    def status(self) -> dict[str, Any]:
        """For /health: whether the engine runs here and who it is."""
        return {"started": self.started, "dequeue": self.dequeue, "executor_id": self.me.executor_id}


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, WebhookFailed)


def abandon_launch() -> None:
    """Undo a DBOS launch that failed half-way, so the next attempt starts from nothing."""
    if "dbos" not in sys.modules:
        return
    from dbos import DBOS

    DBOS.destroy(workflow_completion_timeout_sec=0)  # on the loop: its executor may be DBOS's own
    _give_back_executor()


def _give_back_executor() -> None:
    """DBOS makes its own pool the loop's default executor (`asyncio.to_thread`), and a destroyed
    DBOS leaves it shut down: give the loop, which outlives the engine, a working one back."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(thread_name_prefix="asyncio"))
