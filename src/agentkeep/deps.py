"""A run's `deps`: the served agent's factory called with the run's `RunInfo`, its failures named.

    make_deps(app, info)    the factory's value (awaited when it is a coroutine); a factory that
                            raises fails the run `internal_error` with a message naming the factory,
                            never the exception's text (the log has it, as the failure's cause)
    missing_deps(app)       why an agent cannot run as served: it declares a `deps_type` and no
                            factory gives it one, so every run would meet `ctx.deps is None`

Called by `Runtime.run_agent`, the one agent call every kind of run makes (sync, streamed,
background, a task's `ask()`, a schedule, a resumed run), so each gets its deps the same way.
"""

from __future__ import annotations

import inspect
from typing import Any

from agentkeep.apps import AgentApp, RunInfo
from agentkeep.errors import RunFailed

__all__ = ["declares_deps", "make_deps", "missing_deps"]


def declares_deps(app: AgentApp[Any]) -> bool:
    """Whether the agent was built with a `deps_type` (Pydantic AI's default is `object`)."""
    return app.agent.deps_type not in (object, type(None))


def missing_deps(app: AgentApp[Any], name: str) -> str | None:
    """The message for an agent that needs deps and is served without a factory; None when it can run."""
    if app.deps is not None or not declares_deps(app):
        return None
    deps_type = getattr(app.agent.deps_type, "__name__", str(app.agent.deps_type))
    return (
        f"agent {name!r} declares deps_type={deps_type} but is served without deps: "
        "wrap it in agentkeep.AgentApp(agent, deps=...) so each run gets its deps"
    )


async def make_deps(app: AgentApp[Any], info: RunInfo) -> Any:
    """The deps of the run `info` describes; `RunFailed("internal_error")` when there can be none."""
    if app.deps is None:
        missing = missing_deps(app, info.agent)
        if missing is not None:
            raise RunFailed("internal_error", missing)
        return None
    try:
        value = app.deps(info)
        if inspect.isawaitable(value):
            value = await value
    except Exception as exc:
        raise RunFailed(
            "internal_error", f"the deps factory of agent {info.agent!r} failed ({type(exc).__name__})"
        ) from exc
    return value
