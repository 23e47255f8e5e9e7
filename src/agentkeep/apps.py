"""`AgentApp`: an agent together with what its runs need, and `RunInfo`, what a run tells its factory.

    app = AgentApp(support_agent, deps=make_deps, lifespan=open_pool, name="bank")

    deps(run: RunInfo)   sync or async; called for every run of the agent, on every path (a request,
                         a stream, a background run, a task's `ask()`, a schedule, Lambda, a run
                         resumed after a crash or an approval), its value passed as `deps=`
    lifespan()           an async context manager, entered once per process before the first run
                         and exited at shutdown after the drain; what it yields is `RunInfo.resources`

`agentkeep serve` takes an `AgentApp` wherever it takes an `Agent` (alone, or as a value of the
TARGET's dict). Deps are built anew in each process that runs the agent: they are never serialized,
so a durable run resumed elsewhere calls the factory again there.

Importing this module imports nothing heavy: `import agentkeep` stays cheap for the CLI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from pydantic_ai import Agent

__all__ = ["AgentApp", "AgentMap", "DepsFactory", "Lifespan", "RunInfo", "as_app"]

DepsT = TypeVar("DepsT")


@dataclass(frozen=True)
class RunInfo:
    """What the deps factory knows about the run it makes deps for."""

    run_id: str
    session_id: str
    user_id: str
    agent: str  # the name the agent is served under
    metadata: Mapping[str, Any] = field(default_factory=dict)  # the request's `metadata`
    resources: Any = None  # what the app's `lifespan` yielded in this process (None without one)


DepsFactory = Callable[[RunInfo], DepsT | Awaitable[DepsT]]
Lifespan = Callable[[], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class AgentApp(Generic[DepsT]):
    """A Pydantic AI agent, served with a deps factory and a process lifespan; see the module docstring."""

    agent: Agent[DepsT, Any]
    _: KW_ONLY
    deps: DepsFactory[DepsT] | None = None
    lifespan: Lifespan | None = None
    name: str | None = None  # the name it is served under; default: the agent's name, else the TARGET's


AgentMap = Mapping[str, "Agent[Any, Any] | AgentApp[Any]"]
"""Served agents by name, as a TARGET names them: an Agent, or an AgentApp with its deps and lifespan."""


def as_app(served: Agent[Any, Any] | AgentApp[Any]) -> AgentApp[Any]:
    """`served` as an `AgentApp` (a bare Agent: no deps, no lifespan)."""
    return served if isinstance(served, AgentApp) else AgentApp(served)
