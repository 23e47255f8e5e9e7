"""What the HTTP layer holds for the life of the process."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import Request

from agentkeep.budget import Budget
from agentkeep.config import Settings
from agentkeep.durable import DurableEngine
from agentkeep.runtime import Runtime

log = structlog.get_logger("agentkeep.server")

# After a drain interrupts what was still running, how long the interrupted runs get to record it.
_INTERRUPT_GRACE_S = 10.0


@dataclass
class AppState:
    settings: Settings
    runtime: Runtime | None = None
    budget: Budget | None = None  # the runtime's budget hook, for GET /v1/usage
    durable: DurableEngine | None = None  # background runs (agentkeep.durable)
    started_monotonic: float = field(default_factory=time.monotonic)
    ready: bool = False
    not_ready_reason: str = "starting"
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    draining: bool = False
    on_fatal: Callable[[BaseException], None] | None = None  # the process's way out (GracefulServer.fatal)

    def background(self) -> DurableEngine:
        """The durable engine, which executes or queues background runs."""
        if self.durable is None:
            raise RuntimeError("the durable engine is not started")
        return self.durable

    @property
    def rt(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the runtime is not started")
        return self.runtime

    def spawn(self, coro: Any, *, critical: bool = False) -> asyncio.Task[Any]:
        """Keep a reference to a task that must outlive its request (a streamed run).

        An exception that escapes it is logged; from a `critical` task it also ends the process
        (drain, then exit status 1) through `on_fatal`.
        """
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(functools.partial(self._forget, critical=critical))
        return task

    def _forget(self, task: asyncio.Task[Any], *, critical: bool) -> None:
        self.tasks.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        log.error("background_task_failed", task=task.get_name(), critical=critical, exc_info=exc)
        if critical and self.on_fatal is not None:
            self.on_fatal(exc)

    # --- graceful shutdown (agentkeep.resilience.shutdown.Drainable) ---

    def begin_drain(self) -> None:
        """From now on /ready answers 503 and new runs 503 `draining`; called from a signal handler."""
        self.draining = True
        if self.runtime is not None:
            self.runtime.draining = True
        if self.durable is not None:
            self.durable.begin_drain()

    async def drain(self, timeout: float) -> None:
        """Let in-flight runs finish for up to `timeout` s, then interrupt the rest and let them record it."""
        runtime = self.runtime
        if runtime is None:
            return
        started = time.monotonic()
        log.info("drain.started", active_runs=runtime.active_runs, timeout_s=timeout)
        if not await runtime.wait_idle(timeout):
            interrupted = runtime.interrupt()
            log.warning("drain.timeout", interrupted_runs=interrupted)
            await runtime.wait_idle(_INTERRUPT_GRACE_S)
        log.info("drain.finished", duration_s=round(time.monotonic() - started, 3))


async def app_state(request: Request) -> AppState:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a hand-off per request.
    state: AppState = request.app.state.agentkeep
    return state
