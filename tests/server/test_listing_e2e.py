"""The console's API end to end: agents, the run list, a run's steps, hourly usage and breakers in stats.

A real `agentkeep serve` requiring keys, the scripted model server, keys for users who each see only
their own runs and an admin who sees everyone's.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import wait_for
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.cli import make_key
from tests.support.server import ServerProcess


@dataclass
class Console:
    server: ServerProcess
    mock: MockLLM
    database_url: str
    admin: str

    def key(self, user: str) -> str:
        return make_key(self.database_url, user)

    def get(self, path: str, key: str, **params: Any) -> httpx.Response:
        return self.server.client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})

    def run(self, key: str, **body: Any) -> httpx.Response:
        return self.server.client.post("/v1/runs", json=body, headers={"Authorization": f"Bearer {key}"})

    def ok(self, path: str, key: str, **params: Any) -> Any:
        response = self.get(path, key, **params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{tmp / 'agentkeep.db'}"
    admin = make_key(url, "ops", admin=True)
    prices = tmp / "prices.json"
    prices.write_text(json.dumps({"mock": {"input": 10, "output": 1000}}))  # USD per million tokens
    with MockLLM() as mock:
        env = server_env(
            mock,
            url,
            AGENTKEEP_AUTH="required",
            AGENTKEEP_RATE_LIMIT="100000/minute",
            AGENTKEEP_READ_RATE_LIMIT="100000/minute",
            AGENTKEEP_PRICES_FILE=str(prices),
        )
        with ServerProcess(MOCK_AGENT, tmp, env=env) as server:
            yield Console(server, mock, url, admin)


@pytest.fixture
def mock(console: Console) -> MockLLM:
    console.mock.reset()
    return console.mock


def _sid() -> str:
    return f"s-{secrets.token_hex(4)}"


def test_agents_lists_each_served_agent_with_its_model_and_tools(console: Console) -> None:
    """The mock TARGET serves `assistant` (default, tools add and explode) and `helper`, both on model `mock`."""
    agents = console.ok("/v1/agents", console.key("agents-user"))["agents"]
    assert agents == [
        {"name": "assistant", "model": "mock", "default": True, "tools": ["add", "explode"]},
        {"name": "helper", "model": "mock", "default": False, "tools": []},
    ]
    assert console.server.client.get("/v1/agents").status_code == 401


def test_a_user_lists_only_their_own_runs_and_an_admin_lists_and_filters_everyones(
    console: Console, mock: MockLLM
) -> None:
    """Alice sees her 2 runs, Bob his 1; naming Alice gets Bob a 401; the admin sees all 3 and filters by user."""
    alice, bob = console.key("alice-list"), console.key("bob-list")
    alice_runs = [console.run(alice, message=f"alice {i}").json()["run_id"] for i in range(2)]
    bob_run = console.run(bob, message="bob").json()["run_id"]

    mine = console.ok("/v1/runs", alice)["runs"]
    assert [r["run_id"] for r in mine] == alice_runs[::-1]  # newest first
    assert {r["user_id"] for r in mine} == {"alice-list"}
    assert [r["run_id"] for r in console.ok("/v1/runs", bob)["runs"]] == [bob_run]
    refused = console.get("/v1/runs", bob, user_id="alice-list")
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "unauthorized"

    everyone = {r["run_id"]: r["user_id"] for r in console.ok("/v1/runs", console.admin, limit=200)["runs"]}
    assert {run: everyone[run] for run in [*alice_runs, bob_run]} == {
        alice_runs[0]: "alice-list",
        alice_runs[1]: "alice-list",
        bob_run: "bob-list",
    }
    filtered = console.ok("/v1/runs", console.admin, user_id="bob-list")["runs"]
    assert [r["run_id"] for r in filtered] == [bob_run]


def test_a_run_summary_has_the_fields_and_formats_of_the_run(console: Console, mock: MockLLM) -> None:
    """Each summary carries the contract's fields, with timestamps, usage and cost as GET /v1/runs/{id} has them."""
    key = console.key("summary-user")
    mock.enqueue(Reply.text("hello").with_usage(1000, 100))
    run_id = console.run(key, message="hi").json()["run_id"]
    [summary] = console.ok("/v1/runs", key)["runs"]
    full = console.ok(f"/v1/runs/{run_id}", key)
    assert set(summary) == {
        "run_id", "session_id", "user_id", "agent", "status", "background", "usage", "cost_usd",
        "created_at", "started_at", "finished_at", "duration_ms", "error",
    }  # fmt: skip
    for field in ("run_id", "session_id", "agent", "status", "usage", "cost_usd", "created_at", "finished_at"):
        assert summary[field] == full[field], field
    assert summary["user_id"] == "summary-user" and summary["background"] is False and summary["error"] is None
    assert summary["cost_usd"] == pytest.approx(0.11)  # 1,000 in at $10/M + 100 out at $1,000/M


def test_filters_narrow_the_list_by_status_agent_and_session(console: Console, mock: MockLLM) -> None:
    """status=failed finds the failed run with its error; agent= and session_id= each find only theirs."""
    key = console.key("filter-user")
    session = _sid()
    mock.enqueue(Reply.text("one"), Reply.error(400, "refused"), Reply.text("from helper"))
    ok = console.run(key, message="one", session_id=session).json()["run_id"]
    assert console.run(key, message="two").status_code >= 400
    helper = console.run(key, message="three", agent="helper").json()["run_id"]

    [failed] = console.ok("/v1/runs", key, status="failed")["runs"]
    assert failed["error"]["type"] == "model_error" and failed["status"] == "failed"
    assert [r["run_id"] for r in console.ok("/v1/runs", key, agent="helper")["runs"]] == [helper]
    assert [r["run_id"] for r in console.ok("/v1/runs", key, session_id=session)["runs"]] == [ok]
    assert console.ok("/v1/runs", key, status="succeeded", agent="helper", session_id=session)["runs"] == []

    bad = console.get("/v1/runs", key, status="finished")
    assert bad.status_code == 422 and bad.json()["error"]["type"] == "validation_error"
    for params in ({"limit": 0}, {"limit": 201}):
        assert console.get("/v1/runs", key, **params).status_code == 422
    cursor = console.get("/v1/runs", key, before="not a cursor")
    assert cursor.status_code == 400 and cursor.json()["error"]["type"] == "invalid_request"


def test_the_cursor_pages_through_every_run_once_newest_first(console: Console, mock: MockLLM) -> None:
    """Seven runs in pages of three: 3 + 3 + 1, no run twice, none missed, and the last page ends the list."""
    key = console.key("pager")
    made = [console.run(key, message=f"run {i}").json()["run_id"] for i in range(7)]
    seen: list[str] = []
    pages = 0
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = console.ok("/v1/runs", key, **params)
        seen += [r["run_id"] for r in page["runs"]]
        pages += 1
        if page["next"] is None:
            break
        params["before"] = page["next"]
        console.run(key, message="arrives while paging")  # newer runs do not shift the pages
    assert seen == made[::-1] and pages == 3


def test_the_steps_of_a_run_with_a_tool_call_and_the_messages_it_added(console: Console, mock: MockLLM) -> None:
    """model request → tool call → model request, with tokens and times; the run's own messages; 404 for others."""
    key = console.key("steps-user")
    session = _sid()
    console.run(key, message="earlier turn", session_id=session)
    mock.reset()
    mock.enqueue(Reply.tool_call("add", {"a": 2, "b": 3}).with_usage(40, 7), Reply.text("it is 5").with_usage(60, 4))
    result = console.run(key, message="what is 2+3?", session_id=session).json()
    body = console.ok(f"/v1/runs/{result['run_id']}/steps", key)

    assert body["run_id"] == result["run_id"]
    steps = body["steps"]
    assert [(s["index"], s["kind"], s["name"], s["outcome"]) for s in steps] == [
        (0, "model_request", "mock", "ok"),
        (1, "tool_call", "add", "ok"),
        (2, "model_request", "mock", "ok"),
    ]
    assert (steps[0]["input_tokens"], steps[0]["output_tokens"]) == (40, 7)
    assert (steps[2]["input_tokens"], steps[2]["output_tokens"]) == (60, 4)
    assert "input_tokens" not in steps[1] and "error" not in steps[1]
    assert steps[0]["started_at"] <= steps[1]["started_at"] <= steps[2]["started_at"]
    assert all(s["duration_ms"] >= 0 for s in steps)

    messages = body["messages"]  # this run's turn only, not the earlier one
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[0]["content"] == "what is 2+3?" and messages[-1]["content"] == "it is 5"
    assert messages[1]["tool_calls"] == [{"name": "add", "args": {"a": 2, "b": 3}}]

    other = console.get(f"/v1/runs/{result['run_id']}/steps", console.key("nosy"))
    missing = console.get("/v1/runs/run_000000000000000000000000/steps", key)
    assert other.status_code == missing.status_code == 404 and other.json()["error"]["type"] == "not_found"
    assert console.ok(f"/v1/runs/{result['run_id']}/steps", console.admin)["steps"] == steps


def test_a_failing_tool_is_an_error_step_and_a_stream_records_steps_too(console: Console, mock: MockLLM) -> None:
    """A tool that raises is recorded `error` with the failure's message; a streamed run keeps its steps."""
    key = console.key("tool-error-user")
    mock.enqueue(Reply.tool_call("explode"))
    failed = console.run(key, message="explode")
    assert failed.status_code >= 400
    [run] = console.ok("/v1/runs", key)["runs"]
    steps = console.ok(f"/v1/runs/{run['run_id']}/steps", key)["steps"]
    assert [(s["kind"], s["outcome"]) for s in steps] == [("model_request", "ok"), ("tool_call", "error")]
    assert steps[1]["error"] == "tool 'explode' failed: RuntimeError"

    mock.enqueue(Reply.text("streamed answer", chunks=3))
    headers = {"Authorization": f"Bearer {key}"}
    with console.server.client.stream("POST", "/v1/runs", json={"message": "s", "stream": True}, headers=headers) as r:
        assert "run.completed" in "".join(r.iter_text())
    latest = console.ok("/v1/runs", key, limit=1)["runs"][0]
    streamed = console.ok(f"/v1/runs/{latest['run_id']}/steps", key)
    assert [s["kind"] for s in streamed["steps"]] == ["model_request"]
    assert streamed["messages"][-1]["content"] == "streamed answer"


def test_a_background_runs_steps_show_while_it_runs_and_stay_after(console: Console, mock: MockLLM) -> None:
    """While its second model request is in flight the run shows two steps; finished, it keeps all three."""
    key = console.key("bg-user")
    mock.enqueue(Reply.tool_call("add", {"a": 1, "b": 1}), Reply.text("two").with_latency(2.0))
    accepted = console.run(key, message="1+1 slowly", background=True)
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]
    path = f"/v1/runs/{run_id}/steps"
    wait_for(lambda: len(console.ok(path, key)["steps"]) == 2, 30, "the first two steps")
    assert console.ok(f"/v1/runs/{run_id}", key)["status"] == "running"
    assert console.ok(path, key)["messages"] == []  # the messages are written when the run finishes
    wait_for(lambda: console.ok(f"/v1/runs/{run_id}", key)["status"] == "succeeded", 30, "the run to finish")
    done = console.ok(path, key)
    assert [s["kind"] for s in done["steps"]] == ["model_request", "tool_call", "model_request"]
    assert [m["role"] for m in done["messages"]] == ["user", "assistant", "tool", "assistant"]
    [summary] = console.ok("/v1/runs", key)["runs"]
    assert summary["background"] is True and summary["status"] == "succeeded"


def test_an_admin_reads_and_cancels_another_users_run_that_other_users_cannot_see(
    console: Console, mock: MockLLM
) -> None:
    """The console's run page works for an operator: GET and cancel by an admin key; 404 for anyone else."""
    key = console.key("owner-user")
    mock.enqueue(Reply.text("slow").with_latency(30.0))
    accepted = console.run(key, message="take your time", background=True)
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]
    wait_for(lambda: console.ok(f"/v1/runs/{run_id}", key)["status"] == "running", 30, "the run to start")

    nosy = console.key("nosy-user")
    headers = {"Authorization": f"Bearer {nosy}"}
    assert console.get(f"/v1/runs/{run_id}", nosy).status_code == 404
    assert console.server.client.post(f"/v1/runs/{run_id}/cancel", headers=headers).status_code == 404
    assert console.ok(f"/v1/runs/{run_id}", console.admin)["status"] == "running"

    admin = {"Authorization": f"Bearer {console.admin}"}
    cancelled = console.server.client.post(f"/v1/runs/{run_id}/cancel", headers=admin)
    assert cancelled.status_code == 200, cancelled.text
    wait_for(lambda: console.ok(f"/v1/runs/{run_id}", key)["status"] == "cancelled", 30, "the cancel to land")


def test_hourly_usage_covers_24_hours_and_rises_after_a_run(console: Console, mock: MockLLM) -> None:
    """24 zero-filled hours, oldest first; a run adds its cost, tokens and one run to the current hour."""
    key = console.key("hourly-user")
    before = console.ok("/v1/usage", key)["hourly"]
    assert len(before) == 24 and all(h["runs"] == h["tokens"] == 0 and h["cost_usd"] == 0 for h in before)
    hours = [h["hour"] for h in before]
    assert hours == sorted(hours) and all(h.endswith(":00:00Z") for h in hours)

    mock.enqueue(Reply.text("priced").with_usage(1000, 100))
    assert console.run(key, message="spend").status_code == 200
    after = console.ok("/v1/usage", key)["hourly"]
    now = after[-1]
    assert now["hour"] >= before[-1]["hour"]
    assert (now["runs"], now["tokens"]) == (1, 1100)
    assert now["cost_usd"] == pytest.approx(0.11)
    assert sum(h["runs"] for h in after[:-1]) == 0
    assert console.ok("/v1/usage", console.admin, user_id="hourly-user")["hourly"][-1] == now
    assert console.ok("/v1/usage", console.key("idle-user"))["hourly"][-1]["runs"] == 0


def test_stats_report_version_uptime_and_each_models_breaker(console: Console, mock: MockLLM) -> None:
    """After a run on `mock`, stats name its breaker closed, with the version and a positive uptime."""
    key = console.key("stats-user")
    assert console.run(key, message="hi").status_code == 200
    stats = console.ok("/v1/stats", key)
    assert stats["breakers"] == {"mock": "closed"}
    health = console.server.client.get("/health").json()
    assert stats["version"] == health["version"] and stats["uptime_s"] > 0


def test_an_open_breaker_shows_open_in_stats(tmp_path: Path, mock_llm: MockLLM) -> None:
    """One provider failure opens the breaker (AGENTKEEP_BREAKER_FAILURES=1): stats say so, the step says why."""
    env = server_env(mock_llm, f"sqlite:///{tmp_path / 'a.db'}", AGENTKEEP_BREAKER_FAILURES="1")
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
        assert server.client.get("/v1/stats").json()["breakers"] == {}
        mock_llm.set_default(Reply.error(500, "provider down"))
        failed = server.post_run(message="hi")
        assert failed.status_code >= 500
        assert server.client.get("/v1/stats").json()["breakers"] == {"mock": "open"}
        [run] = server.client.get("/v1/runs").json()["runs"]
        steps = server.client.get(f"/v1/runs/{run['run_id']}/steps").json()["steps"]
        # One step per model request, its attempts included: the 500, then the retry the open breaker refused.
        [step] = steps
        assert step["kind"] == "model_request" and step["outcome"] == "error"
        assert "circuit breaker is open" in step["error"] and "provider down" not in step["error"]


def test_the_new_endpoints_are_in_the_openapi_schema(console: Console) -> None:
    """Each has a summary and a response schema, so /docs and clients know them."""
    paths = console.server.client.get("/openapi.json").json()["paths"]
    for path in ("/v1/agents", "/v1/runs", "/v1/runs/{run_id}/steps"):
        get = paths[path]["get"]
        assert get["summary"] and "$ref" in json.dumps(get["responses"]["200"]), path
    usage = json.dumps(paths["/v1/usage"]["get"]["responses"]["200"])
    assert "UsageOut" in usage
