"""Structured output and discarded responses, as a client of `agentkeep serve` sees them.

`output` is the agent's output as JSON (an object for a Pydantic model `output_type`); a stream sends
the object as it grows (`output.delta`), and `model.retry` whenever a response is thrown away (an
output validator's or a tool's retry, arguments that failed validation).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply, ToolCall
from tests.server import sse
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import AGENTS_DIR, ServerProcess

STRUCTURED_AGENT = str(AGENTS_DIR / "structured_agent.py")
PARIS = {"name": "Paris", "population": 2102650, "tags": ["capital", "river"]}


@pytest.fixture
def server(mock_llm: MockLLM, tmp_path: Path) -> Iterator[ServerProcess]:
    env = server_env(mock_llm, f"sqlite:///{tmp_path / 'agentkeep.db'}")
    with ServerProcess(STRUCTURED_AGENT, tmp_path, env=env) as proc:
        yield proc


def _city(args: dict[str, object], *, chunks: int = 1) -> Reply:
    return Reply.tool_calls(ToolCall("final_result", args), chunks=chunks)


def test_a_structured_output_is_an_object_in_the_result_the_run_and_the_openapi(
    server: ServerProcess, mock_llm: MockLLM
) -> None:
    """The RunResult's and GET /v1/runs/{id}'s `output` is the City object, not a string of it; the
    schema describes `output` as any JSON value."""
    mock_llm.enqueue(_city(PARIS))
    result = server.post_run(message="Paris?", agent="city").json()
    assert result["status"] == "succeeded" and result["output"] == PARIS
    assert server.client.get(f"/v1/runs/{result['run_id']}").json()["output"] == PARIS
    schemas = server.client.get("/openapi.json").json()["components"]["schemas"]
    for model in ("RunResultOut", "RunOut"):
        assert "type" not in schemas[model]["properties"]["output"], schemas[model]["properties"]["output"]


def test_a_streamed_structured_output_grows_in_output_delta_events(server: ServerProcess, mock_llm: MockLLM) -> None:
    """Each output.delta is a valid partial City, none repeats the one before, the last is the whole
    object, and run.completed carries it; no text.delta (there is no text)."""
    mock_llm.enqueue(_city(PARIS, chunks=8).with_latency(0, chunk_delay=0.08))
    events = sse.post(server.client, "/v1/runs", {"message": "Paris?", "agent": "city"})
    assert sse.names(events)[-1] == "run.completed" and "text.delta" not in sse.names(events)
    partials = [data["output"] for data in sse.data_of(events, "output.delta")]
    assert len(partials) >= 2, partials
    assert all(p["name"] == "Paris" and isinstance(p["population"], int) for p in partials)
    assert all(a != b for a, b in itertools.pairwise(partials))
    assert partials[-1] == PARIS == events[-1][1]["output"]


def test_a_rejected_structured_output_is_announced_by_model_retry(server: ServerProcess, mock_llm: MockLLM) -> None:
    """The validator rejects the first City (negative population): model.retry names why, between the
    discarded object's output.delta and the accepted one's; the result is the accepted City."""
    mock_llm.enqueue(_city({**PARIS, "population": -1}, chunks=3), _city(PARIS, chunks=3))
    events = sse.post(server.client, "/v1/runs", {"message": "count Paris", "agent": "census"})
    names = sse.names(events)
    assert names.count("model.retry") == 1 and names[-1] == "run.completed"
    retry = names.index("model.retry")
    assert "negative" in events[retry][1]["reason"]
    before = [d["output"] for n, d in events[:retry] if n == "output.delta"]
    after = [d["output"] for n, d in events[retry:] if n == "output.delta"]
    assert before and before[-1]["population"] == -1
    assert after and after[-1] == PARIS == events[-1][1]["output"]


def test_a_rejected_text_answer_is_discarded_by_model_retry(server: ServerProcess, mock_llm: MockLLM) -> None:
    """A text answer the validator sends back: its deltas, then model.retry, then the final answer's
    deltas; the run's output is only the final answer. Not streamed, the same run succeeds with it."""
    mock_llm.enqueue(Reply.text("draft: maybe", chunks=2), Reply.text("final: yes", chunks=2))
    events = sse.post(server.client, "/v1/runs", {"message": "decide", "agent": "writer"})
    names = sse.names(events)
    retry = names.index("model.retry")
    text = ["".join(d["text"] for n, d in part if n == "text.delta") for part in (events[:retry], events[retry:])]
    assert text == ["draft: maybe", "final: yes"]
    assert events[-1][1]["output"] == "final: yes"
    mock_llm.enqueue(Reply.text("draft again"), Reply.text("final again"))
    assert server.post_run(message="decide", agent="writer").json()["output"] == "final again"


def test_a_tool_retry_and_bad_tool_arguments_are_announced_by_model_retry(mock_llm: MockLLM, tmp_path: Path) -> None:
    """On the assistant: `add` called with a string argument fails validation (tool.result ok=false, then
    model.retry); the corrected call succeeds (ok=true, its content the sum)."""
    env = server_env(mock_llm, f"sqlite:///{tmp_path / 'agentkeep.db'}")
    mock_llm.enqueue(
        Reply.tool_call("add", {"a": "two", "b": 3}, id="call_bad"),
        Reply.tool_call("add", {"a": 2, "b": 3}, id="call_good"),
        Reply.text("5"),
    )
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
        events = sse.post(server.client, "/v1/runs", {"message": "2+3"})
    results = sse.data_of(events, "tool.result")
    assert [(r["tool_call_id"], r["ok"]) for r in results] == [("call_bad", False), ("call_good", True)]
    assert results[1]["content"] == "5"
    names = sse.names(events)
    assert names.count("model.retry") == 1
    assert names.index("tool.result") < names.index("model.retry") < len(names) - 1 - names[::-1].index("tool.result")
    assert "add" in sse.data_of(events, "model.retry")[0]["reason"]


def test_a_long_tool_result_is_cut_to_2000_characters_in_the_event(mock_llm: MockLLM, tmp_path: Path) -> None:
    """`tool.result.content` holds at most 2,000 characters of what the model saw."""
    env = server_env(mock_llm, f"sqlite:///{tmp_path / 'agentkeep.db'}")
    mock_llm.enqueue(Reply.tool_call("add", {"a": 10**2500, "b": 1}), Reply.text("big"))
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
        events = sse.post(server.client, "/v1/runs", {"message": "big sum"})
    (result,) = sse.data_of(events, "tool.result")
    assert result["ok"] and len(result["content"]) == 2000 and result["content"].startswith("1000")
