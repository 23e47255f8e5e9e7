"""The ASGI app: the contract's HTTP API over the runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from agentkeep import __version__
from agentkeep.budget import budget_from_settings
from agentkeep.config import Settings
from agentkeep.durable import DurableEngine, Identity, identity
from agentkeep.durable.schedules import check_schedules
from agentkeep.errors import ConfigError
from agentkeep.loader import AgentMap
from agentkeep.observability import Telemetry, configure_tracing
from agentkeep.observability.steps import StepRecorder
from agentkeep.resilience import RateLimit
from agentkeep.runtime import Runtime
from agentkeep.server.auth import Authenticator, auth_required
from agentkeep.server.console import router as console_router
from agentkeep.server.errors import install_error_handlers
from agentkeep.server.guards import rate_limited, rate_limiter, resilience_hook
from agentkeep.server.listing import router as listing_router
from agentkeep.server.middleware import BodyLimit, JSONBodies, SecurityHeaders
from agentkeep.server.ops import router as ops_router
from agentkeep.server.routes import probes, router
from agentkeep.server.state import AppState
from agentkeep.server.task_routes import router as tasks_router
from agentkeep.server.usage import budget_metrics
from agentkeep.server.usage import router as usage_router
from agentkeep.stores import open_store
from agentkeep.stores.keys import KeyStore
from agentkeep.stores.sql import SQLStore

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    agents: AgentMap,
    *,
    tls: bool = False,
    auth: bool | None = None,
    api: bool = True,
    worker: bool = True,
    me: Identity | None = None,
) -> FastAPI:
    """The app for `agents`; the database opens (and migrates) when the app starts.

    `auth`: whether `/v1` needs API keys (the CLI decides it from the bound address, `check_auth`);
    None means AGENTKEEP_AUTH for an app with no known address, so `auto` requires keys.
    `api=False` is `agentkeep worker` (only /health, /ready, /metrics); `worker=False` is
    `serve --no-worker` (background runs are queued here, executed by workers); `me` is the
    process's identity to the durable engine.
    """
    if not api and not DurableEngine.available():
        raise ConfigError("agentkeep worker needs the durable extra: pip install 'agentkeep[durable]'")
    check_schedules(settings.schedules, agents)
    state = AppState(settings)
    authenticator = Authenticator(auth_required(settings.auth, None) if auth is None else auth)
    telemetry = Telemetry(settings)  # first hook: it times, and sees, everything the others do
    steps = StepRecorder()  # last hook: it times the request as sent, for GET /v1/runs/{id}/steps
    limiter = rate_limiter(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store = await open_store(settings.database_url.get_secret_value())
        tracing = configure_tracing(settings)
        hooks = [telemetry] if settings.telemetry else []
        assert isinstance(store, SQLStore)
        authenticator.keys = KeyStore(store)
        budget = state.budget = budget_from_settings(settings, store.engine, budget_metrics())
        # Before the budget, so a run on a model whose breaker is open is refused before any pricing.
        resilience = resilience_hook(settings)
        state.runtime = Runtime(settings, agents, store, hooks=[*hooks, resilience, budget, steps])
        state.runtime.draining = state.draining  # a signal may have come while starting
        durable = state.durable = DurableEngine(
            settings, state.runtime, me or identity(settings, source=None, port=0), dequeue=worker
        )
        if not api:
            await durable.start()
        elif worker and durable.available() and durable.needed_now():  # off the path to readiness
            state.spawn(durable.start(), critical=True)
        state.ready = True
        try:
            yield
        finally:
            state.rt.draining = True
            await state.rt.wait_idle(settings.drain_timeout_s)
            await durable.stop()
            await budget.aclose(timeout=5.0)
            await resilience.close()
            await limiter.aclose()
            await store.close()
            if tracing is not None:
                tracing.shutdown()

    app = FastAPI(
        title="agentkeep",
        version=__version__,
        description="A production runtime for Pydantic AI agents.",
        lifespan=lifespan,
    )
    app.state.agentkeep = state
    app.state.telemetry = telemetry
    app.state.steps = steps
    app.state.auth = authenticator
    install_error_handlers(app)
    app.include_router(probes)
    app.include_router(ops_router)
    if api:
        app.include_router(router)
        app.include_router(tasks_router)
        app.include_router(usage_router)
        app.include_router(listing_router)
        app.include_router(console_router)  # GET / and /console/*: the page uses only the API above
    app.add_middleware(JSONBodies)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimit, limiter=limiter, on_limited=rate_limited)  # before the body is read
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
