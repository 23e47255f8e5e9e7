"""The worker's loop: take work, back off when the loop itself fails, drain on shutdown.

`agentkeep worker` gives `WorkerLoop` a `step`: one pass that claims and executes whatever is due
and says whether it found any. The loop owns only the rhythm around it:

    step found work        run the next step at once
    step found nothing     wait `idle_s` (woken early by a shutdown)
    step raised            log it, wait base · 2^(n-1) capped at `backoff_cap_s` after the n-th
                           failure in a row, try again; one success resets the count

so a database outage makes the worker wait longer and longer instead of spinning, and the
process never dies of a transient failure. Shutdown is the server's: `WorkerLoop` is a
`Drainable`, so `GracefulServer` (serving the worker's /health, /ready, /metrics) stops it taking
work at the first signal, lets the step in flight finish up to AGENTKEEP_DRAIN_TIMEOUT_S, then
cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from agentkeep.resilience.retry import exponential_backoff

__all__ = ["Step", "WorkerLoop"]

log = structlog.get_logger("agentkeep.worker")

Step = Callable[[], Awaitable[bool]]


class WorkerLoop:
    """Runs `step` until drained, backing off exponentially (capped) while it keeps failing."""

    def __init__(
        self,
        step: Step,
        *,
        idle_s: float = 1.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        pause: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.step = step
        self.idle_s = idle_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.failures = 0  # consecutive failed steps
        self.draining = False
        self._pause = pause or self._interruptible_sleep
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Run the loop as a task; an exception escaping it is a bug the caller should treat as fatal.

        A loop whose last run ended (drained) starts afresh: a Lambda worker container's one durable
        engine starts and stops its upkeep once per invocation."""
        if self._task is not None and self._task.done():
            self.draining = False
            self._wake.clear()
        self._task = asyncio.ensure_future(self.run())
        return self._task

    async def run(self) -> None:
        while not self.draining:
            try:
                found_work = await self.step()
            except Exception as exc:
                self.failures += 1
                delay = exponential_backoff(self.failures, base=self.backoff_base_s, cap=self.backoff_cap_s)
                log.warning("worker.step_failed", failures=self.failures, retry_in_s=delay, exc_info=exc)
                await self._pause(delay)
                continue
            self.failures = 0
            if not found_work:
                await self._pause(self.idle_s)

    def backoff(self) -> float:
        """The wait after the current run of failures (0 when the last step succeeded)."""
        if self.failures == 0:
            return 0.0
        return exponential_backoff(self.failures, base=self.backoff_base_s, cap=self.backoff_cap_s)

    # --- agentkeep.resilience.shutdown.Drainable ---

    def begin_drain(self) -> None:
        """Take no more work; a pause in progress ends now."""
        self.draining = True
        self._wake.set()

    async def drain(self, timeout: float) -> None:
        """Let the step in flight finish for up to `timeout` seconds, then cancel it."""
        self.begin_drain()
        task = self._task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            log.warning("worker.drain_timeout", timeout_s=timeout)
            task.cancel("agentkeep: drain timeout")
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _interruptible_sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
