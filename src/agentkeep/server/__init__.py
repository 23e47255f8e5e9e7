"""The ASGI app: the contract's HTTP API over the runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from agentkeep import __version__
from agentkeep.config import Settings
from agentkeep.loader import AgentMap
from agentkeep.runtime import Runtime
from agentkeep.server.errors import install_error_handlers
from agentkeep.server.middleware import BodyLimit, SecurityHeaders
from agentkeep.server.routes import router
from agentkeep.server.state import AppState
from agentkeep.stores import open_store

__all__ = ["create_app"]


def create_app(settings: Settings, agents: AgentMap, *, tls: bool = False) -> FastAPI:
    """The app for `agents`; the database opens (and migrates) when the app starts."""
    state = AppState(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store = await open_store(settings.database_url.get_secret_value())
        state.runtime = Runtime(settings, agents, store)
        state.ready = True
        try:
            yield
        finally:
            state.rt.draining = True
            await state.rt.wait_idle(settings.drain_timeout_s)
            await store.close()

    app = FastAPI(
        title="agentkeep",
        version=__version__,
        description="A production runtime for Pydantic AI agents.",
        lifespan=lifespan,
    )
    app.state.agentkeep = state
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders, hsts=tls)
    return app
