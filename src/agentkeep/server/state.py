"""What the HTTP layer holds for the life of the process."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from agentkeep.config import Settings
from agentkeep.runtime import Runtime


@dataclass
class AppState:
    settings: Settings
    runtime: Runtime | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    ready: bool = False
    not_ready_reason: str = "starting"
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def rt(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the runtime is not started")
        return self.runtime

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Keep a reference to a task that must outlive its request (a streamed run)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here so a failure never goes unobserved


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.agentkeep
    return state
