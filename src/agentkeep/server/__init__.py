"""The ASGI app: the contract's HTTP API over a process's services (`agentkeep.services`).

`create_app` mounts routers and middleware on the services its lifespan builds (or that a Lambda
container built); it builds no part of the runtime itself. Every process serves `OPS_ROUTERS`;
`serve` adds `routers` (default `DEFAULT_ROUTERS`), so another protocol is mounted next to the API
by passing `[*DEFAULT_ROUTERS, its_router]`. A route reaches the services through the `State`
dependency (`server.routes`): `state.started()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from agentkeep import __version__
from agentkeep.config import Settings
from agentkeep.durable import DurableEngine, Identity
from agentkeep.durable.schedules import check_schedules
from agentkeep.errors import ConfigError
from agentkeep.loader import AgentMap
from agentkeep.resilience import RateLimit
from agentkeep.server.auth import Authenticator, auth_required
from agentkeep.server.console import router as console_router
from agentkeep.server.docs import router as docs_router
from agentkeep.server.errors import install_error_handlers
from agentkeep.server.files import router as files_router
from agentkeep.server.guards import rate_limited, rate_limiter, read_rate_limiter, starts_run
from agentkeep.server.listing import router as listing_router
from agentkeep.server.middleware import BodyLimit, JSONBodies, SecurityHeaders
from agentkeep.server.ops import router as ops_router
from agentkeep.server.routes import probes, router
from agentkeep.server.state import AppState
from agentkeep.server.task_routes import router as tasks_router
from agentkeep.server.usage import router as usage_router
from agentkeep.services import Services, build_services
from agentkeep.tools.files import check_workspace

__all__ = ["DEFAULT_ROUTERS", "OPS_ROUTERS", "create_app"]

log = structlog.get_logger("agentkeep.server")

# Served by every process, `agentkeep worker` too: /health, /live and /ready, /metrics and /v1/stats.
OPS_ROUTERS: tuple[APIRouter, ...] = (probes, ops_router)
# What `serve` mounts next to them: the contract's HTTP API, the console (GET / and /console/*),
# whose page uses only that API, and the API reference (/docs, /redoc) with no CDN.
DEFAULT_ROUTERS: tuple[APIRouter, ...] = (
    router,
    files_router,
    tasks_router,
    usage_router,
    listing_router,
    console_router,
    docs_router,
)


def create_app(
    settings: Settings,
    agents: AgentMap,
    *,
    tls: bool = False,
    auth: bool | None = None,
    api: bool = True,
    worker: bool = True,
    me: Identity | None = None,
    routers: Sequence[APIRouter] = DEFAULT_ROUTERS,
    services: Services | None = None,
) -> FastAPI:
    """The app for `agents`; the database opens (and migrates) when the app starts.

    `auth`: whether `/v1` needs API keys (the CLI decides it from the bound address, `check_auth`);
    None means AGENTKEEP_AUTH for an app with no known address, so `auto` requires keys.
    `api=False` is `agentkeep worker` (only `OPS_ROUTERS`, and the durable engine starts with the
    app); `worker=False` is `serve --no-worker` (background runs are queued here, executed by
    workers); `me` is the process's identity to the durable engine. `routers` are mounted next to
    `OPS_ROUTERS` unless `api=False`.

    `services`: already built, by a caller that closes them after the app (a Lambda container);
    `worker` and `me` are then theirs (`dequeue`, `me`). None: the lifespan builds them at startup
    and closes them at shutdown.
    """
    if not api and not DurableEngine.available():
        raise ConfigError("agentkeep worker needs the durable extra: pip install 'agentkeep[durable]'")
    check_schedules(settings.schedules, agents)  # here too: a mistake is one line before the server binds
    check_workspace(settings)
    state = AppState(settings)
    authenticator = Authenticator(auth_required(settings.auth, None) if auth is None else auth)
    if api and authenticator.required and settings.workspace_scope == "shared":
        log.warning(
            "workspace.shared",
            detail="AGENTKEEP_WORKSPACE_SCOPE=shared with API keys: every user's agents read and write the "
            "same files; use session or user to keep tenants apart",
        )
    # The middleware's, so the app's: made before the app starts, closed when it stops.
    limiter, reads = rate_limiter(settings), read_rate_limiter(settings)

    async def open_services() -> Services:
        """The process's services, ready to serve: `agentkeep serve` calls it (`AppState.open`)
        before binding, so that a database that does not answer is one line, not a failed lifespan."""
        built = services if services is not None else await build_services(settings, agents, me=me, dequeue=worker)
        try:
            if not api:
                await built.durable.start()
        except BaseException:
            if services is None:
                await built.aclose()
            raise
        return built

    state.opener = open_services

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        built = await state.open()  # already open when `agentkeep serve` opened them before binding
        try:
            authenticator.keys = built.keys
            built.runtime.draining = state.draining  # a signal may have come while starting
            durable = built.durable
            if api and durable.dequeue and durable.available() and durable.needed_now():  # off the path to readiness
                state.spawn(durable.start_when_possible(), critical=True)
            state.ready = True
            yield
        finally:
            if services is None:
                await built.aclose()
            await limiter.aclose()
            await reads.aclose()

    app = FastAPI(
        title="agentkeep",
        version=__version__,
        description="A production runtime for Pydantic AI agents.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are server/docs.py's: FastAPI's load their scripts from a CDN
        redoc_url=None,
    )
    app.state.agentkeep = state
    app.state.auth = authenticator
    install_error_handlers(app)
    for mounted in (*OPS_ROUTERS, *(routers if api else ())):
        app.include_router(mounted)
    app.add_middleware(JSONBodies)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(  # before the body is read
        RateLimit, limiter=limiter, reads=reads, starts_run=starts_run, on_limited=rate_limited
    )
    if settings.cors_origins:  # closed unless configured: no CORS headers at all
        origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Location", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders, hsts=tls)
    return app
