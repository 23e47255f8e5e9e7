"""`agentkeep.nesting`, the one patch of Pydantic AI: agent runs started inside a run join its hooks.

If a Pydantic AI release moves what the patch relies on (`Agent.iter` as the single way in, its
`model` and `capabilities` keywords, ContextVars set in `wrap_run` reaching tool tasks), these fail.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkeep import nesting
from agentkeep.config import Settings
from agentkeep.hooks import Hook, ModelCall, ModelProceed, RunState
from agentkeep.runtime import RunRequest, Runtime
from agentkeep.stores import open_store
from agentkeep.stores.sql import SQLStore


class Seen(Hook):
    """Records (agent, depth, model) of every model request that passes the run's hooks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, int, str]] = []

    async def wrap_model_request(self, run: RunState, call: ModelCall, proceed: ModelProceed) -> ModelResponse:
        self.calls.append((call.agent, call.depth, call.model_name))
        return await proceed()


def _answering(text: str, name: str) -> FunctionModel:
    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        yield text

    return FunctionModel(lambda m, i: ModelResponse(parts=[TextPart(text)]), stream_function=stream, model_name=name)


def _calling(*calls: dict[str, Any]) -> FunctionModel:
    """Calls `via` once per item of `calls`, all in one response; answers once they returned."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(p, ToolReturnPart) for p in messages[-1].parts):
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(parts=[ToolCallPart("via", args) for args in calls])

    return FunctionModel(respond, model_name="parent-model")


sub = Agent(_answering("from sub", "sub-model"), name="sub")
unmodelled = Agent(name="unmodelled")


async def _via(ctx: RunContext[Any], how: str) -> str:
    """Runs `sub` each way Pydantic AI offers; `shared` passes the parent's usage."""
    if how == "run":
        return (await sub.run("q")).output
    if how == "shared":
        return (await sub.run("q", usage=ctx.usage)).output
    if how == "run_stream":
        async with sub.run_stream("q") as streamed:
            return await streamed.get_output()
    if how == "run_stream_events":
        async with sub.run_stream_events("q") as events:
            async for _ in events:
                pass
        return "ok"
    if how == "iter":
        async with sub.iter("q") as run:
            async for _ in run:
                pass
        assert run.result is not None
        return run.result.output
    if how == "nested":  # a sub-agent that itself runs `sub`: depth 2
        return (await middle.run("q")).output
    return (await unmodelled.run("q")).output


middle = Agent(_calling({"how": "run"}), name="middle")
middle.tool(_via, name="via")


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(sqlite_url)
    yield opened
    await opened.close()


def _runtime(store: SQLStore, parent: Agent[Any, Any], hook: Hook, **cfg: Any) -> Runtime:
    return Runtime(Settings(_env_file=None, **cfg), {"parent": parent}, store, [hook])  # type: ignore[call-arg]


def _parent(*hows: str) -> Agent[None, str]:
    parent: Agent[None, str] = Agent(_calling(*({"how": h} for h in hows)), name="parent")
    parent.tool(_via, name="via")
    return parent


def test_the_patch_point_is_where_the_patch_expects_it() -> None:
    """`Agent.iter` still takes the prompt, `model` and `capabilities` (what the patch passes), and
    the runtime installed the patch over it."""
    parameters = inspect.signature(nesting._ORIGINAL_ITER).parameters
    assert {"user_prompt", "model", "capabilities", "usage"} <= parameters.keys()
    assert parameters["capabilities"].kind is inspect.Parameter.KEYWORD_ONLY
    nesting.install()
    assert nesting.installed() and Agent.iter is nesting._iter_in_run


async def test_every_way_of_running_a_sub_agent_goes_through_the_runs_hooks(store: SQLStore) -> None:
    """run, run_stream, run_stream_events and iter, with and without usage=ctx.usage: each of the
    sub-agent's requests passes the run's hooks at depth 1 and counts once in the run's usage."""
    seen = Seen()
    ways = ("run", "shared", "run_stream", "run_stream_events", "iter")
    result = await _runtime(store, _parent(*ways), seen).run(RunRequest(message="go"))
    nested = [call for call in seen.calls if call[1] == 1]
    assert nested == [("sub", 1, "sub-model")] * len(ways)
    assert seen.calls[0] == ("parent", 0, "parent-model") and seen.calls[-1] == ("parent", 0, "parent-model")
    assert result["usage"]["requests"] == 2 + len(ways)
    assert nesting.current() is None  # the nest does not outlive the run


async def test_a_sub_agent_of_a_sub_agent_is_in_the_run_too(store: SQLStore) -> None:
    """Depth 2: the parent's tool runs `middle`, whose tool runs `sub`."""
    seen = Seen()
    result = await _runtime(store, _parent("nested"), seen).run(RunRequest(message="go"))
    assert [depth for _, depth, _ in seen.calls] == [0, 1, 2, 1, 0]
    assert result["usage"]["requests"] == 5 and result["usage"]["tool_calls"] == 2


async def test_agentkeep_model_overrides_a_sub_agents_model_and_fills_in_a_missing_one(store: SQLStore) -> None:
    """With AGENTKEEP_MODEL set (`test`, Pydantic AI's TestModel) the sub-agent with a model of its
    own and the one built without any both run on it."""
    seen = Seen()
    parent: Agent[None, str] = Agent(_calling(), name="parent")  # on TestModel, which calls every tool once

    @parent.tool_plain
    async def ask_sub() -> str:
        return (await sub.run("q", model=_answering("explicit", "explicit-model"))).output

    @parent.tool_plain
    async def ask_unmodelled() -> str:
        return (await unmodelled.run("q")).output

    await _runtime(store, parent, seen, model="test").run(RunRequest(message="go"))
    assert {model for _, _, model in seen.calls} == {"test"}
    assert sorted((agent, depth) for agent, depth, _ in seen.calls if depth) == [("sub", 1), ("unmodelled", 1)]


async def test_a_run_outside_agentkeep_is_left_alone() -> None:
    """An agent run outside any run (a script, a test) joins nothing and keeps its own model."""
    assert nesting.current() is None
    result = await sub.run("q")
    assert result.output == "from sub"
    assert [m.model_name for m in result.all_messages() if isinstance(m, ModelResponse)] == ["sub-model"]
