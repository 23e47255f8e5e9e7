"""`AgentApp` in process: what the loader makes of a TARGET holding one, and the deps each run gets."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.models.test import TestModel

from agentkeep import AgentApp, RunInfo
from agentkeep.config import Settings
from agentkeep.errors import ConfigError, RunFailed
from agentkeep.loader import load_agents
from agentkeep.runtime import RunRequest, Runtime
from agentkeep.stores import open_store
from agentkeep.stores.sql import SQLStore


def _target(tmp_path: Path, source: str, name: str = "bot.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def test_a_file_with_an_app_and_its_agent_serves_the_app(tmp_path: Path) -> None:
    """The Agent an AgentApp wraps is the app's, not a second candidate; the app's name wins."""
    target = _target(
        tmp_path,
        """
        from pydantic_ai import Agent
        from agentkeep import AgentApp
        agent = Agent("test")
        app = AgentApp(agent, deps=lambda run: None, name="helpdesk")
        """,
    )
    apps = load_agents(target)
    assert list(apps) == ["helpdesk"] and apps["helpdesk"].deps is not None


def test_names_come_from_the_dict_the_app_the_agent_the_attribute_then_the_file(tmp_path: Path) -> None:
    """A dict's keys; `AgentApp(name=)`; the agent's own name; `:attr`; else the file's stem."""
    target = _target(
        tmp_path,
        """
        from pydantic_ai import Agent
        from agentkeep import AgentApp
        named = Agent("test", name="given")
        nameless = Agent("test")
        agents = {"first": named, "second": AgentApp(nameless, name="ignored")}
        """,
        name="support_bot.py",
    )
    assert list(load_agents(target)) == ["first", "second"]
    assert list(load_agents(f"{target}:named")) == ["given"]
    assert list(load_agents(f"{target}:nameless")) == ["nameless"]
    single = _target(tmp_path, "from pydantic_ai import Agent\nbot = Agent('test')\n", name="triage.py")
    assert list(load_agents(single)) == ["triage"]


def test_a_dict_entry_that_is_neither_an_agent_nor_an_app_is_one_line(tmp_path: Path) -> None:
    """A TARGET's dict holding something else is refused at load, naming what it may hold."""
    target = _target(tmp_path, "agents = {'x': 42}\n")
    with pytest.raises(ConfigError, match=r"not name → pydantic_ai\.Agent or agentkeep\.AgentApp"):
        load_agents(target)


@dataclass
class Deps:
    info: RunInfo


agent: Agent[Deps, str] = Agent(TestModel(custom_output_text="ok"), deps_type=Deps, name="deps-agent")
seen: list[RunInfo] = []


@agent.tool
async def who(ctx: RunContext[Deps]) -> str:
    seen.append(ctx.deps.info)
    return ctx.deps.info.run_id


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(sqlite_url)
    yield opened
    await opened.close()


def _runtime(store: SQLStore, app: AgentApp[Any]) -> Runtime:
    runtime = Runtime(Settings(_env_file=None), {"desk": app}, store)  # type: ignore[call-arg]
    runtime.served.resources["desk"] = {"pool": "the lifespan's"}
    return runtime


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_the_factory_gets_the_runs_ids_metadata_and_resources(store: SQLStore, asynchronous: bool) -> None:
    """Sync or async, the factory's value is `ctx.deps`, built from the run it serves."""
    seen.clear()

    async def make_async(run: RunInfo) -> Deps:
        return Deps(run)

    app = AgentApp(agent, deps=make_async if asynchronous else Deps)
    result = await _runtime(store, app).run(
        RunRequest(message="hi", user_id="ada", session_id="s1", metadata={"customer_id": 7})
    )
    [info] = seen
    assert (info.run_id, info.session_id, info.user_id, info.agent) == (result["run_id"], "s1", "ada", "desk")
    assert info.metadata == {"customer_id": 7} and info.resources == {"pool": "the lifespan's"}


async def test_a_factory_that_raises_fails_the_run_without_its_text(store: SQLStore) -> None:
    """The run fails `internal_error` naming the factory and the exception's type, not its text."""

    def broken(run: RunInfo) -> Deps:
        raise KeyError("password=hunter2")

    with pytest.raises(RunFailed) as failed:
        await _runtime(store, AgentApp(agent, deps=broken)).run(RunRequest(message="hi"))
    assert failed.value.error_type == "internal_error"
    assert failed.value.message == "the deps factory of agent 'desk' failed (KeyError)"


async def test_an_agent_that_declares_deps_served_without_a_factory_names_the_fix(store: SQLStore) -> None:
    """A `deps_type` and no factory: the run fails before the model is asked, saying what to add."""
    with pytest.raises(RunFailed, match=r"wrap it in agentkeep.AgentApp\(agent, deps=...\)"):
        await _runtime(store, AgentApp(agent)).run(RunRequest(message="hi"))
