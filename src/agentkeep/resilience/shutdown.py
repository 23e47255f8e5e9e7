"""Graceful shutdown of the processes agentkeep runs (`serve`, `worker`): stop taking work, drain, cancel.

    first SIGTERM or SIGINT   `begin_drain()` at once: /ready answers 503 and new runs 503
                              `draining`, while the socket keeps accepting, so a late client
                              gets a clean 503 rather than a refused connection. Then `drain()`:
                              in-flight work finishes, up to AGENTKEEP_DRAIN_TIMEOUT_S, and what
                              is still running is cancelled (recorded `interrupted`). Only then
                              does uvicorn stop listening, close idle connections and run the
                              lifespan shutdown (the database closes). Exit status 0.
    second signal             exit at once, status 128 + the signal's number
    fatal(exc)                a task that must not die did: log it, drain, exit status 1, so
                              systemd or Docker restarts the process

Before uvicorn starts, `prepare` (the app's services: the database, migrations) runs on the
server's event loop; an `AgentkeepError` from it ends the start quietly as `startup_error`, for the
CLI to print as one line, so nothing claims the server started first. `on_started` is called once
the sockets listen (the CLI's banner).

Uvicorn's own handling stops listening first and re-raises the signal at the end (so the process
dies by SIGTERM, not status 0); `GracefulServer` replaces both.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, Protocol

import structlog
import uvicorn

from agentkeep.errors import AgentkeepError

__all__ = ["Drainable", "GracefulServer", "log_loop_exception"]

log = structlog.get_logger("agentkeep.shutdown")

FATAL_EXIT = 1


class Drainable(Protocol):
    """What a `GracefulServer` drains: the HTTP app's state, or a worker loop."""

    def begin_drain(self) -> None:
        """Stop taking new work now. Called from the signal handler: set flags, do not await."""

    async def drain(self, timeout: float) -> None:
        """Let in-flight work finish for up to `timeout` seconds, then cancel what is left."""


def log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's last-resort handler, through our logs: an exception nobody awaited is never silent."""
    exc = context.get("exception")
    task = context.get("task") or context.get("future")
    log.error(
        "unhandled_task_exception",
        message=context.get("message"),
        task=getattr(task, "get_name", lambda: None)(),
        exc_info=exc if isinstance(exc, BaseException) else None,
    )


class GracefulServer(uvicorn.Server):
    """`uvicorn.Server` that drains `target` before it stops listening, and exits 0 after a signal."""

    def __init__(
        self,
        config: uvicorn.Config,
        target: Drainable,
        *,
        drain_timeout_s: float,
        prepare: Callable[[], Awaitable[object]] | None = None,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.target = target
        self.drain_timeout_s = drain_timeout_s
        self.prepare = prepare
        self.on_started = on_started
        self.startup_error: AgentkeepError | None = None  # what `prepare` refused, for the CLI to print
        self.exit_code = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(log_loop_exception)
        if self.prepare is not None:
            try:
                await self.prepare()
            except AgentkeepError as exc:
                self.startup_error = exc
                return
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes of the event loop: set flags and schedule, no more.
        if self._draining:
            os._exit(128 + sig)  # the operator insists: no drain, no cleanup
        self._begin_shutdown(signal.Signals(sig).name)

    def fatal(self, exc: BaseException) -> None:
        """A task the process cannot live without failed: drain and exit with status 1."""
        log.error("fatal_error", exc_info=exc)
        self.exit_code = FATAL_EXIT
        if not self._draining:
            self._begin_shutdown("fatal_error")

    def _begin_shutdown(self, reason: str) -> None:
        self._draining = True
        if not self.started or self._loop is None:
            self.should_exit = True  # still starting: nothing is in flight yet
            return
        self.target.begin_drain()
        self._loop.call_soon_threadsafe(self._start_drain, reason)

    def _start_drain(self, reason: str) -> None:
        log.info("shutdown.draining", reason=reason, drain_timeout_s=self.drain_timeout_s)
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            await self.target.drain(self.drain_timeout_s)
        except Exception as exc:
            log.error("drain_failed", exc_info=exc)
            self.exit_code = FATAL_EXIT
        finally:
            log.info("shutdown.drained")
            self.should_exit = True
