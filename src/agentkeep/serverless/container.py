"""What one Lambda container keeps between invocations: an event loop, the app, its database pool.

Built on the first invocation, then reused until Lambda discards the container:

    settings       read once (AGENTKEEP_* from the function's environment)
    agents         AGENTKEEP_TARGET, imported once
    loop           one event loop for the container's life: the database pool and the Redis
                   client belong to it, so every invocation runs on it
    app            `server.create_app` — the same routes, auth, limits, budgets and error
                   envelope as `agentkeep serve` — started once (database opened and migrated)

The pool opens a connection when a request needs one and keeps it for the next invocation; with
one request per container at a time that is the one or two connections a run uses, not a pool's
worth (PostgreSQL's `max_connections` is shared by every container). Background runs are only
queued here (`worker=False`): `worker_handler` executes them.

Lambda's disk is per container and temporary, so on Lambda a SQLite database would lose every
session with the container: the container refuses to start with one.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentkeep.errors import ConfigError
from agentkeep.startup import gc_paused

if TYPE_CHECKING:
    from fastapi import FastAPI

    from agentkeep.config import Settings
    from agentkeep.durable import Identity
    from agentkeep.server.state import AppState
    from agentkeep.serverless.asgi import Lifespan

__all__ = ["Container", "container", "on_lambda"]


def on_lambda() -> bool:
    """Whether this process is a Lambda function (AWS sets the variable in every one)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


@dataclass
class Container:
    """The container's long-lived parts."""

    settings: Settings
    loop: asyncio.AbstractEventLoop
    app: FastAPI
    lifespan: Lifespan
    me: Identity

    @property
    def state(self) -> AppState:
        state: AppState = self.app.state.agentkeep
        return state

    def close_at_exit(self) -> None:
        """Shut the app down and close the loop, as far as an exiting interpreter allows: its
        thread pools are already shut, so a SQLite store (whose driver needs a thread) is left
        for the operating system to close."""
        with contextlib.suppress(RuntimeError):
            self.loop.run_until_complete(self.lifespan.stop())
        self.loop.close()


_container: Container | None = None


def container() -> Container:
    """This container's `Container`, built on first use."""
    global _container
    if _container is None:
        with gc_paused():  # every import below it too: a quarter of the cold start otherwise
            _container = _build()
        # Lambda ends a container without running this; an interpreter that exits on its own
        # (a local run, a test) closes the database instead of abandoning the app mid-lifespan.
        atexit.register(_container.close_at_exit)
    return _container


def _build() -> Container:
    # Imported here, not at the top: under the collector's pause, and not by `worker_handler`'s
    # or a test's import of this module.
    from agentkeep.config import load_settings

    settings = load_settings()
    check_settings(settings)
    from agentkeep.durable import identity
    from agentkeep.loader import load_agents, target_source
    from agentkeep.observability import configure_logging
    from agentkeep.server import create_app
    from agentkeep.serverless.asgi import Lifespan

    assert settings.target is not None  # check_settings
    configure_logging(settings)
    agents = load_agents(settings.target)
    me = identity(settings, source=target_source(settings.target), port=0)
    if settings.executor_id is None:
        me = type(me)(_executor_id(), me.version)
    app = create_app(settings, agents, worker=False, me=me)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    lifespan = Lifespan(app)
    try:
        loop.run_until_complete(lifespan.start())
    except BaseException:
        loop.close()  # the next invocation builds the container again, on a new loop
        raise
    return Container(settings, loop, app, lifespan, me)


def check_settings(settings: Settings) -> None:
    """Refuse, in one line, what cannot work in a function: no TARGET, or SQLite on Lambda."""
    if not settings.target:
        raise ConfigError("set AGENTKEEP_TARGET to the agent to serve (module:attr or path/to/file.py[:attr])")
    if on_lambda() and settings.is_sqlite:
        raise ConfigError(
            "AGENTKEEP_DATABASE_URL is SQLite, whose file Lambda discards with each container: "
            "set it to postgresql://USER:PASSWORD@HOST:5432/DB"
        )


def _executor_id() -> str:
    """This container's name to the durable engine: unique per container, as a run's owner must be.

    On Lambda, the log stream names the execution environment; elsewhere host and process."""
    stream = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
    if stream:
        return f"lambda:{stream}"
    return f"{socket.gethostname()}:{os.getpid()}"
