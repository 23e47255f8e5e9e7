"""The agents one process serves: by name, with the model, deps and resources each call of them gets.

    ServedAgents(settings, agents)
        apps / agents / models    by name: the AgentApp, its Agent, its model resolved once at
                                  startup (AGENTKEEP_MODEL's override, or the built-in model for an
                                  agent without one; None: the agent's own)
        resources                 what each app's lifespan yielded here (`services` enters them)
        model_for(agent)          the model of any call of `agent`, served or not (a task's `ask()`)
        nested_model(agent, m)    the model of an agent run started inside a run (`nesting`)
        deps_for(agent, run)      a served agent's deps for `run`, from its factory (`deps`)

The runtime holds one; nothing here runs an agent.
"""

from __future__ import annotations

import functools
from typing import Any

import structlog
from pydantic_ai import Agent
from pydantic_ai.models import Model

from agentkeep.apps import AgentApp, AgentMap, RunInfo, as_app
from agentkeep.config import Settings
from agentkeep.deps import make_deps, missing_deps
from agentkeep.hooks import RunState
from agentkeep.models import DEFAULT_MODEL, model_from_string, resolve_model

__all__ = ["ServedAgents"]

log = structlog.get_logger("agentkeep.runtime")


class ServedAgents:
    """See the module docstring. `agents` must not be empty."""

    def __init__(self, settings: Settings, agents: AgentMap) -> None:
        self.settings = settings
        self.apps: dict[str, AgentApp[Any]] = {name: as_app(served) for name, served in agents.items()}
        self.agents: dict[str, Agent[Any, Any]] = {name: app.agent for name, app in self.apps.items()}
        self.default = next(iter(self.apps))
        self.models: dict[str, Model | None] = {
            name: resolve_model(settings.model, agent) for name, agent in self.agents.items()
        }
        self.resources: dict[str, Any] = {}
        self._names = {id(agent): name for name, agent in self.agents.items()}
        for name, app in self.apps.items():
            if (missing := missing_deps(app, name)) is not None:
                log.warning("agent.deps_missing", agent=name, problem=missing)

    def name_of(self, agent: Agent[Any, Any]) -> str | None:
        """The name `agent` is served under; None for an agent this process does not serve."""
        return self._names.get(id(agent))

    def model_of(self, name: str) -> Model | str | None:
        """The model a run of served agent `name` will use (a model string for an agent's own)."""
        return self.models[name] or self.agents[name].model

    def model_for(self, agent: Agent[Any, Any]) -> Model | None:
        """The model a call of `agent` uses: a served agent's, resolved once at startup; any other's
        resolved the same way (AGENTKEEP_MODEL's override, or the built-in model)."""
        name = self.name_of(agent)
        return self.models[name] if name is not None else resolve_model(self.settings.model, agent)

    def nested_model(self, agent: Agent[Any, Any], given: Model | str | None) -> Model | None:
        """The model of an agent run started inside a run, which passed `given` as `model=`:
        AGENTKEEP_MODEL over anything, else the built-in model for an agent without one; else
        None, the call's own choice."""
        if self.settings.model:
            return self._override
        if given is None and agent.model is None:
            return self._fallback
        return None

    async def deps_for(self, agent: Agent[Any, Any], run: RunState) -> Any:
        """The deps of a call of `agent` in `run`: its AgentApp's factory's for a served agent, with
        the run's ids, metadata and the app's resources (`agentkeep.deps`); None for any other."""
        name = self.name_of(agent)
        if name is None:
            return None
        info = RunInfo(run.run_id, run.session_id, run.user_id, name, dict(run.metadata), self.resources.get(name))
        return await make_deps(self.apps[name], info)

    @functools.cached_property
    def _override(self) -> Model:
        return model_from_string(self.settings.model or DEFAULT_MODEL)

    @functools.cached_property
    def _fallback(self) -> Model:
        return model_from_string(DEFAULT_MODEL)
