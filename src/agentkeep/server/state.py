"""What the HTTP layer holds for the life of the process: the services once built, and what only an
HTTP process has (the readiness flag, the tasks that outlive their request, the drain on a signal).

The services themselves (store, runtime, durable engine, ...) are `agentkeep.services.Services`,
built by the app's lifespan, or by a Lambda container before its app starts.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import Request

from agentkeep.budget import Budget
from agentkeep.config import Settings
from agentkeep.durable import DurableEngine
from agentkeep.runtime import Runtime
from agentkeep.services import Services

__all__ = ["AppState", "app_state"]

log = structlog.get_logger("agentkeep.server")

# After a drain interrupts what was still running, how long the interrupted runs get to record it.
_INTERRUPT_GRACE_S = 10.0


@dataclass
class AppState:
    """The app's state (`app.state.agentkeep`); a `Drainable` for `GracefulServer`."""

    settings: Settings
    services: Services | None = None  # None until the lifespan has them
    started_monotonic: float = field(default_factory=time.monotonic)
    ready: bool = False
    not_ready_reason: str = "starting"
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    draining: bool = False
    on_fatal: Callable[[BaseException], None] | None = None  # the process's way out (GracefulServer.fatal)
    opener: Callable[[], Awaitable[Services]] | None = None  # builds the services (set by create_app)

    async def open(self) -> Services:
        """Build the services unless they are built already; the lifespan calls it, and `agentkeep
        serve` earlier, before the port listens, so a start that fails says so in one line first."""
        if self.services is None:
            if self.opener is None:
                raise RuntimeError("the app has no way to build its services")
            self.services = await self.opener()
        return self.services

    def started(self) -> Services:
        """The services; `RuntimeError` before the lifespan built them."""
        if self.services is None:
            raise RuntimeError("the services are not started")
        return self.services

    @property
    def runtime(self) -> Runtime | None:
        return self.services.runtime if self.services is not None else None

    @property
    def rt(self) -> Runtime:
        return self.started().runtime

    @property
    def budget(self) -> Budget | None:
        """The runtime's budget hook, for GET /v1/usage."""
        return self.services.budget if self.services is not None else None

    def background(self) -> DurableEngine:
        """The durable engine, which executes or queues background runs."""
        return self.started().durable

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
        if self.services is not None:
            self.services.runtime.draining = True
            self.services.durable.begin_drain()

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
