"""The scripted mock LLM, checked against the real clients that will talk to it: the openai SDK and pydantic-ai."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam
from pydantic_ai import Agent, AgentRunResultEvent, ModelAPIError, ModelHTTPError, PartDeltaEvent, TextPartDelta
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from agentkeep.testing.mock_llm import MockLLM, MockLLMControl, MockLLMProcess, Reply, ToolCall

SRC = Path(__file__).resolve().parents[2] / "src"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def mock() -> Iterator[MockLLM]:
    with MockLLM() as server:
        yield server


@pytest.fixture
async def client(mock: MockLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    # No SDK retries: a test scripting an error or a drop must see it, not the reply after it.
    async with openai.AsyncOpenAI(base_url=mock.base_url, api_key="test", max_retries=0) as c:
        yield c


def make_agent(mock: MockLLM, **kwargs: Any) -> Agent[None, str]:
    model = OpenAIChatModel("mock", provider=OpenAIProvider(base_url=mock.base_url, api_key="test"))
    return Agent(model, model_settings={"max_retries": 0}, **kwargs)


# -- replies and their JSON form ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        Reply.text("hi", chunks=3),
        Reply.tool_call("add", {"a": 1}, id="call_1"),
        Reply.tool_calls(ToolCall("a", {"x": [1]}), ToolCall("b"), text="working on it", chunks=4),
        Reply.error(429, "slow down", retry_after=2.5),
        Reply.drop().with_latency(0.5),
        Reply.text("x").with_latency(1, chunk_delay=0.1).with_usage(10, 3),
        Reply.call_then_answer("add", {"a": 1}, "done").with_latency(0.2),
    ],
)
def test_reply_json_round_trip(reply: Reply) -> None:
    data = reply.to_json()
    assert Reply.from_json(json.loads(json.dumps(data))) == reply


def test_reply_json_shorthand_and_validation() -> None:
    assert Reply.from_json("hello") == Reply.text("hello")
    assert Reply.from_json({"error": 503}) == Reply.error(503)
    with pytest.raises(ValueError, match="unknown reply keys"):
        Reply.from_json({"text": "hi", "latncy": 1})
    with pytest.raises(ValueError, match="needs one of"):
        Reply.from_json({"chunks": 2})
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Reply.error(200)


def test_rule_picks_branch_by_last_message() -> None:
    rule = Reply.call_then_answer("add", {"a": 1}, "done")
    assert rule.resolve(USER).kind == "tool_calls"
    assert rule.resolve([*USER, {"role": "tool", "tool_call_id": "c", "content": "2"}]) == Reply.text("done")
    assert rule.resolve([]).kind == "tool_calls"


# -- the wire format, through the openai SDK -------------------------------------------------------


async def test_completion_shape(mock: MockLLM, client: openai.AsyncOpenAI) -> None:
    mock.enqueue(Reply.text("Hello, world"))
    r = await client.chat.completions.create(model="mock", messages=USER, max_tokens=50)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == "mock"
    assert r.created > 0
    assert r.choices[0].message.content == "Hello, world"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    # Length-derived: 11 prompt characters and 12 completion characters at ~4 a token.
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 3, 6)
    assert mock.requests[-1]["max_tokens"] == 50


async def test_tool_call_shape_and_explicit_usage(client: openai.AsyncOpenAI, mock: MockLLM) -> None:
    mock.enqueue(Reply.tool_calls(ToolCall("add", {"a": 1, "b": 2}), ToolCall("mul", {"a": 3})).with_usage(100, 7))
    r = await client.chat.completions.create(model="mock", messages=USER)
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls"
    assert calls is not None
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    assert [(c.type, c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("function", "add", {"a": 1, "b": 2}),
        ("function", "mul", {"a": 3}),
    ]
    assert len({c.id for c in calls}) == 2
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (100, 7, 107)


async def test_streamed_text_with_usage(mock: MockLLM, client: openai.AsyncOpenAI) -> None:
    mock.enqueue(Reply.text("one two three four", chunks=4))
    stream = await client.chat.completions.create(
        model="mock",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas == ["one t", "wo th", "ree ", "four"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5  # 18 characters at ~4 a token
    assert all(c.usage is None for c in chunks[:-1])


async def test_streamed_tool_call_wire_format(mock: MockLLM) -> None:
    mock.enqueue(Reply.tool_call("lookup", {"query": "weather in Paris"}))
    async with httpx.AsyncClient() as http:
        r = await http.post(mock.base_url + "/chat/completions", json={"model": "m", "messages": USER, "stream": True})
    assert r.headers["content-type"] == "text/event-stream"
    lines = [line.removeprefix("data: ") for line in r.text.split("\n\n") if line]
    assert lines[-1] == "[DONE]"
    deltas = [json.loads(line)["choices"][0] for line in lines[:-1]]
    assert deltas[0]["delta"]["role"] == "assistant"
    head = deltas[1]["delta"]["tool_calls"][0]
    assert head["id"].startswith("call_")
    assert (head["index"], head["type"], head["function"]) == (0, "function", {"name": "lookup", "arguments": ""})
    fragments = [d["delta"]["tool_calls"][0] for d in deltas[2:-1]]
    assert len(fragments) == 2
    assert all(set(f) == {"index", "function"} for f in fragments)
    assert json.loads("".join(f["function"]["arguments"] for f in fragments)) == {"query": "weather in Paris"}
    assert deltas[-1] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}


async def test_error_reply_has_openai_shape_and_retry_after(mock: MockLLM) -> None:
    mock.enqueue(Reply.error(429, "Rate limit reached", retry_after=2))
    async with httpx.AsyncClient() as http:
        r = await http.post(mock.base_url + "/chat/completions", json={"model": "m", "messages": USER})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    assert r.json() == {
        "error": {"message": "Rate limit reached", "type": "rate_limit_error", "param": None, "code": None}
    }


async def test_sdk_honours_retry_after(mock: MockLLM) -> None:
    mock.enqueue(Reply.error(503, retry_after=0.2), Reply.text("second time lucky"))
    async with openai.AsyncOpenAI(base_url=mock.base_url, api_key="test", max_retries=1) as c:
        start = time.monotonic()
        r = await c.chat.completions.create(model="mock", messages=USER)
    assert r.choices[0].message.content == "second time lucky"
    assert time.monotonic() - start >= 0.2
    assert mock.request_count == 2


async def test_drop_closes_without_answer(mock: MockLLM, client: openai.AsyncOpenAI) -> None:
    mock.enqueue(Reply.drop())
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="mock", messages=USER)
    r = await client.chat.completions.create(model="mock", messages=USER)
    assert r.choices[0].message.content == "This is a mock reply."


async def test_latency_and_chunk_delay(mock: MockLLM, client: openai.AsyncOpenAI) -> None:
    mock.enqueue(Reply.text("slow").with_latency(0.3))
    start = time.monotonic()
    await client.chat.completions.create(model="mock", messages=USER)
    assert time.monotonic() - start >= 0.3

    mock.enqueue(Reply.text("abc", chunks=3).with_latency(0, chunk_delay=0.1))
    start = time.monotonic()
    stream = await client.chat.completions.create(model="mock", messages=USER, stream=True)
    arrivals = [time.monotonic() - start async for _ in stream]
    # role, "a", "b", "c", finish: each after another 0.1 s, so they really are streamed one by one.
    assert len(arrivals) == 5
    assert arrivals[-1] >= 0.4
    assert arrivals[-1] - arrivals[0] >= 0.35


# -- counters, concurrency, lifecycle -----------------------------------------------------------------


async def test_counters_log_and_reset() -> None:
    with MockLLM(max_logged=2) as mock:
        async with openai.AsyncOpenAI(base_url=mock.base_url, api_key="test", max_retries=0) as c:
            for model in ("a", "b", "a"):
                await c.chat.completions.create(model=model, messages=USER)
        assert mock.request_count == 3
        assert mock.requests_by_model == {"a": 2, "b": 1}
        assert [body["model"] for body in mock.requests] == ["b", "a"]  # bounded: the last two
        mock.enqueue("queued")
        mock.reset()
        assert mock.stats() == {"requests": 0, "by_model": {}, "queued": 0, "default": mock.stats()["default"]}
        assert mock.requests == []


async def test_concurrent_requests_each_consume_one_reply(mock: MockLLM, client: openai.AsyncOpenAI) -> None:
    mock.enqueue(*(Reply.text(f"reply {i}").with_latency(0.01 * (i % 5)) for i in range(50)))

    async def ask() -> str:
        r = await client.chat.completions.create(model="mock", messages=USER)
        return r.choices[0].message.content or ""

    answers = await asyncio.gather(*(ask() for _ in range(50)))
    assert sorted(answers) == sorted(f"reply {i}" for i in range(50))
    assert mock.request_count == 50
    assert mock.queued == 0


async def test_close_frees_port_and_cuts_idle_and_sleeping_connections() -> None:
    mock = MockLLM([Reply.text("never").with_latency(60)]).start()
    port = mock.port
    async with httpx.AsyncClient(timeout=30) as http:
        await http.get(mock.url + "/_mock/stats")  # leaves an idle keep-alive connection
        pending = asyncio.create_task(http.post(mock.base_url + "/chat/completions", json={"messages": USER}))
        while mock.request_count == 0:
            await asyncio.sleep(0.01)
        start = time.monotonic()
        await asyncio.to_thread(mock.close)
        assert time.monotonic() - start < 2
        with pytest.raises(httpx.RemoteProtocolError):
            await pending
    mock.close()  # idempotent
    with MockLLM(port=port) as again, httpx.Client() as http:  # the port is free to serve again at once
        assert http.get(again.url + "/_mock/stats").json()["requests"] == 0


def test_unknown_route_and_bad_json(mock: MockLLM) -> None:
    with httpx.Client(base_url=mock.url) as http:
        assert http.get("/nope").status_code == 404
        bad = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"
        assert http.post("/_mock/script", json={"replies": [{"txt": "typo"}]}).status_code == 400
        assert http.get("/v1/models").json()["data"][0]["id"] == "mock"
    assert mock.request_count == 0  # neither malformed chat requests nor control calls count as model requests


# -- pydantic-ai end to end ----------------------------------------------------------------------------


async def test_pydantic_ai_text_answer_via_model_string(mock: MockLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    # The way `agentkeep serve` will be pointed at it: environment plus the `openai-chat:mock` model string.
    monkeypatch.setenv("OPENAI_BASE_URL", mock.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    mock.enqueue("The answer is 42.")
    agent = Agent("openai-chat:mock")
    async with agent:
        result = await agent.run("What is the answer?")
    assert result.output == "The answer is 42."
    assert mock.requests_by_model == {"mock": 1}
    assert mock.requests[0]["messages"][-1] == {"role": "user", "content": "What is the answer?"}


async def test_pydantic_ai_streams_text(mock: MockLLM) -> None:
    mock.enqueue(Reply.text("Streaming works in five pieces", chunks=5))
    agent = make_agent(mock)
    deltas: list[str] = []
    output = None
    async with agent, agent.run_stream_events("go") as events:
        async for event in events:
            if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                deltas.append(event.delta.content_delta)
            elif isinstance(event, AgentRunResultEvent):
                output = event.result.output
    assert output == "Streaming works in five pieces"
    assert len(deltas) >= 3  # the first piece may arrive in the part-start event rather than a delta
    assert mock.requests[0]["stream"] is True
    assert mock.requests[0]["stream_options"] == {"include_usage": True}


async def test_pydantic_ai_tool_call_then_answer_repeats_with_rule(mock: MockLLM) -> None:
    mock.set_default(Reply.call_then_answer("add", {"a": 2, "b": 3}, "The sum is 5."))
    calls: list[tuple[int, int]] = []
    agent = make_agent(mock)

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        calls.append((a, b))
        return a + b

    async with agent:
        for run in range(3):
            result = await agent.run("What is 2 + 3?")
            assert result.output == "The sum is 5."
            assert result.usage.requests == 2
            assert len(calls) == run + 1
    assert calls == [(2, 3)] * 3
    assert mock.request_count == 6  # 2 model requests per run, 1 tool call between them
    first, second = mock.requests[:2]
    assert first["tools"][0]["function"]["name"] == "add"
    assert second["messages"][-1]["role"] == "tool"
    assert second["messages"][-1]["content"] == "5"


async def test_pydantic_ai_streamed_tool_call(mock: MockLLM) -> None:
    mock.set_default(Reply.call_then_answer("add", {"a": 20, "b": 22}, "42").with_latency(0, chunk_delay=0.01))
    calls: list[tuple[int, int]] = []
    agent = make_agent(mock)

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        calls.append((a, b))
        return a + b

    async with agent, agent.run_stream_events("What is 20 + 22?") as events:
        results = [e.result.output async for e in events if isinstance(e, AgentRunResultEvent)]
    assert results == ["42"]
    assert calls == [(20, 22)]
    assert mock.request_count == 2
    assert mock.requests[1]["messages"][-1]["content"] == "42"


async def test_pydantic_ai_sees_error_status(mock: MockLLM) -> None:
    mock.enqueue(Reply.error(503, "overloaded", retry_after=1))
    agent = make_agent(mock)
    async with agent:
        with pytest.raises(ModelHTTPError) as info:
            await agent.run("hi")
    assert info.value.status_code == 503
    assert mock.request_count == 1


async def test_pydantic_ai_sees_connection_drop(mock: MockLLM) -> None:
    mock.enqueue(Reply.drop())
    agent = make_agent(mock)
    async with agent:
        with pytest.raises(ModelAPIError):
            await agent.run("hi")


# -- as a separate process ---------------------------------------------------------------------------


def test_cli_prints_base_url_and_serves_script(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"replies": ["first"], "default": {"text": "fallback"}}))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentkeep.testing.mock_llm", "--port", "0", "--script", str(script)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        with httpx.Client(base_url=base_url) as http:
            texts = [
                http.post("/chat/completions", json={"model": "m", "messages": USER}).json()["choices"][0]["message"]
                for _ in range(2)
            ]
        assert [t["content"] for t in texts] == ["first", "fallback"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0  # SIGTERM is a clean shutdown
        assert proc.stdout is not None
        proc.stdout.close()


async def test_process_scripted_over_control_api() -> None:
    with MockLLMProcess() as proc:
        control = proc.control
        control.script(Reply.tool_call("add", {"a": 1, "b": 1}), "after", default=Reply.text("default"))
        assert control.stats()["queued"] == 2
        async with openai.AsyncOpenAI(base_url=proc.base_url, api_key="test", max_retries=0) as c:
            first = await c.chat.completions.create(model="mock", messages=USER)
            texts = [
                (await c.chat.completions.create(model="mock", messages=USER)).choices[0].message.content
                for _ in range(2)
            ]
        assert first.choices[0].finish_reason == "tool_calls"
        assert texts == ["after", "default"]
        stats = control.stats()
        assert (stats["requests"], stats["by_model"], stats["queued"]) == (3, {"mock": 3}, 0)
        assert len(control.requests()) == 3
        control.script("x", "y")
        control.script("z", clear=True)
        assert control.stats()["queued"] == 1
        assert control.reset()["requests"] == 0
        assert MockLLMControl(proc.base_url.removesuffix("/v1")).stats()["default"] == {
            "text": "This is a mock reply.",
            "chunks": 1,
        }
