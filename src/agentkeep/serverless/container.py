"""What one Lambda container keeps between invocations: an event loop, the services, the app.

Built on the first invocation, then reused until Lambda discards the container:

    settings       read once (AGENTKEEP_* from the function's environment)
    agents         AGENTKEEP_TARGET, imported once
    loop           one event loop for the container's life: the database pool and the Redis
                   client belong to it, so every invocation runs on it
    services       `agentkeep.services.build_services` — the same store, budgets, breakers, runtime
                   and durable engine as `agentkeep serve` — built once (database opened and migrated)
    app            for `handler` only: `server.create_app` on those services — the same routes,
                   auth, limits and error envelope as `agentkeep serve` — started once

A container serves one handler, as a Lambda function has one: the first invocation decides. For
`handler` the durable engine only queues background runs (`dequeue=False`); for `worker_handler`
it executes them, started and stopped once per invocation (worker.py), and no app is built.

The pool opens a connection when a request needs one and keeps it for the next invocation; with
one request per container at a time that is the one or two connections a run uses, not a pool's
worth (PostgreSQL's `max_connections` is shared by every container).

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
    from agentkeep.serverless.asgi import Lifespan
    from agentkeep.services import Services

__all__ = ["Container", "container", "on_lambda"]


def on_lambda() -> bool:
    """Whether this process is a Lambda function (AWS sets the variable in every one)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


@dataclass
class Container:
    """The container's long-lived parts."""

    settings: Settings
    loop: asyncio.AbstractEventLoop
    services: Services
    app: FastAPI | None = None  # None in a worker's container
    lifespan: Lifespan | None = None

    @property
    def serves_http(self) -> bool:
        return self.app is not None

    def close_at_exit(self) -> None:
        """Shut the app and the services down and close the loop, as far as an exiting interpreter
        allows: its thread pools are already shut, so a SQLite store (whose driver needs a thread)
        is left for the operating system to close."""
        with contextlib.suppress(RuntimeError):
            if self.lifespan is not None:
                self.loop.run_until_complete(self.lifespan.stop())
            self.loop.run_until_complete(self.services.aclose())
        self.loop.close()


_container: Container | None = None


def container(*, http: bool = True) -> Container:
    """This container's `Container`, built on first use: for `handler` (`http`), or for
    `worker_handler`. `ConfigError` when the other handler built it."""
    global _container
    if _container is None:
        with gc_paused():  # every import below it too: a quarter of the cold start otherwise
            _container = _build(http=http)
        # Lambda ends a container without running this; an interpreter that exits on its own
        # (a local run, a test) closes the database instead of abandoning the app mid-lifespan.
        atexit.register(_container.close_at_exit)
    if _container.serves_http != http:
        built, asked = ("handler", "worker_handler") if _container.serves_http else ("worker_handler", "handler")
        raise ConfigError(f"this container serves {built}; give {asked} a function of its own")
    return _container


def _build(*, http: bool) -> Container:
    # Imported here, not at the top: under the collector's pause, and not by `worker_handler`'s
    # or a test's import of this module.
    from agentkeep.config import load_settings

    settings = load_settings()
    check_settings(settings)
    from agentkeep.durable import identity
    from agentkeep.loader import load_agents, target_source
    from agentkeep.observability import configure_logging
    from agentkeep.services import build_services

    assert settings.target is not None  # check_settings
    configure_logging(settings)
    agents = load_agents(settings.target)
    me = identity(settings, source=target_source(settings.target), port=0)
    if settings.executor_id is None:
        me = type(me)(_executor_id(), me.version)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        services = loop.run_until_complete(build_services(settings, agents, me=me, dequeue=not http))
        box = Container(settings, loop, services)
        if http:
            _mount_app(box)
    except BaseException:
        loop.close()  # the next invocation builds the container again, on a new loop
        raise
    return box


def _mount_app(box: Container) -> None:
    """The app `agentkeep serve` serves, on the container's services, started (its lifespan)."""
    from agentkeep.server import create_app
    from agentkeep.serverless.asgi import Lifespan

    services = box.services
    try:
        box.app = create_app(box.settings, services.agents, services=services)
        box.lifespan = Lifespan(box.app)
        box.loop.run_until_complete(box.lifespan.start())
    except BaseException:
        box.loop.run_until_complete(services.aclose())
        raise


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
