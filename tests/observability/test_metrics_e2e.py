"""`agentkeep serve` as Prometheus and a log shipper see it: counts that match, JSON lines, no secrets."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.support.server import ServerProcess

AGENT = str(Path(__file__).with_name("telemetry_agent.py"))
KEY_CANARY = f"canary-key-{secrets.token_hex(8)}"  # not key-shaped: only the settings' secret list can catch it
HEADER_CANARY = f"canary-header-{secrets.token_hex(8)}"
CONTRACT_METRICS = {
    "agentkeep_runs": "counter",
    "agentkeep_run_duration_seconds": "histogram",
    "agentkeep_model_requests": "counter",
    "agentkeep_model_request_duration_seconds": "histogram",
    "agentkeep_tokens": "counter",
    "agentkeep_cost_usd": "counter",
    "agentkeep_tool_calls": "counter",
    "agentkeep_tool_call_duration_seconds": "histogram",
    "agentkeep_run_iterations": "histogram",
    "agentkeep_active_runs": "gauge",
    "agentkeep_circuit_state": "gauge",
    "agentkeep_rate_limited": "counter",
    "agentkeep_budget_rejections": "counter",
}


class Scrape:
    """One parse of /metrics: families by name and sample values by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in self.families.values() for s in f.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, MockLLM]]:
    workdir = tmp_path_factory.mktemp("observability")
    with MockLLM(default=Reply.call_then_answer("add", {"a": 2, "b": 3}, "5")) as mock:
        env = {
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": KEY_CANARY,
            "AGENTKEEP_DATABASE_URL": f"sqlite:///{workdir / 'agentkeep.db'}",
        }
        with ServerProcess(AGENT, workdir, env=env) as server:
            yield server, mock


def _scrape(server: ServerProcess) -> Scrape:
    response = server.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


def _run(server: ServerProcess, **body: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {HEADER_CANARY}", "X-Api-Key": HEADER_CANARY}
    response = server.client.post("/v1/runs", json={"message": "what is 2+3?", **body}, headers=headers)
    data: dict[str, Any] = response.json()
    return {"status_code": response.status_code, **data}


def _wait_finished(server: ServerProcess, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run: dict[str, Any] = server.client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in {"succeeded", "failed", "cancelled", "interrupted"}:
            return run
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} did not finish")


def _run_ids_in_log(server: ServerProcess) -> set[str]:
    return {json.loads(line).get("run_id") for line in server.stdout_path.read_text().splitlines() if line} - {None}


def test_metrics_count_exactly_what_the_server_did(served: tuple[ServerProcess, MockLLM]) -> None:
    """8 good runs (sync, concurrent, streamed, background) + 2 failing tools: every counter and histogram agrees."""
    server, mock = served
    before, stats_before = _scrape(server), server.client.get("/v1/stats").json()
    known = _run_ids_in_log(server)
    with ThreadPoolExecutor(6) as pool:
        good = list(pool.map(lambda _: _run(server), range(6)))
    assert all(r["status_code"] == 200 for r in good), good
    with server.client.stream("POST", "/v1/runs", json={"message": "stream it", "stream": True}) as stream:
        assert "event: run.completed" in "".join(stream.iter_text())
    accepted = server.client.post("/v1/runs", json={"message": "later", "background": True}).json()
    assert _wait_finished(server, accepted["run_id"])["status"] == "succeeded"
    for _ in range(2):
        mock.enqueue(Reply.tool_call("explode"))
        failed = _run(server)
        assert failed["status_code"] == 500 and failed["error"]["type"] == "tool_error"

    run_ids = _run_ids_in_log(server) - known
    assert len(run_ids) == 10
    runs = [server.client.get(f"/v1/runs/{run_id}").json() for run_id in run_ids]
    input_tokens = sum(r["usage"]["input_tokens"] for r in runs)
    output_tokens = sum(r["usage"]["output_tokens"] for r in runs)
    after = _scrape(server)

    def delta(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    for name, kind in CONTRACT_METRICS.items():
        assert after.families[name].type == kind, name
    assert delta("agentkeep_runs_total", agent="assistant", status="succeeded") == 8
    assert delta("agentkeep_runs_total", agent="assistant", status="failed") == 2
    assert delta("agentkeep_run_duration_seconds_count", agent="assistant") == 10
    assert delta("agentkeep_run_iterations_count", agent="assistant") == 10
    assert delta("agentkeep_run_iterations_sum", agent="assistant") == 8 * 2 + 2 * 1
    assert delta("agentkeep_model_requests_total", model="mock", outcome="ok") == 18
    assert delta("agentkeep_model_request_duration_seconds_count", model="mock") == 18
    assert delta("agentkeep_tokens_total", model="mock", direction="input") == input_tokens > 0
    assert delta("agentkeep_tokens_total", model="mock", direction="output") == output_tokens > 0
    assert delta("agentkeep_tool_calls_total", tool="add", outcome="ok") == 8
    assert delta("agentkeep_tool_calls_total", tool="explode", outcome="error") == 2
    assert delta("agentkeep_tool_call_duration_seconds_count", tool="add") == 8
    assert delta("agentkeep_tool_call_duration_seconds_count", tool="explode") == 2
    assert after("agentkeep_active_runs") == 0
    assert after("process_resident_memory_bytes") > 10_000_000 and after("process_open_fds") > 0
    buckets = {
        float(s.labels["le"])
        for s in after.families["agentkeep_model_request_duration_seconds"].samples
        if "le" in s.labels
    }
    assert min(buckets) <= 0.05 and max(b for b in buckets if b != float("inf")) >= 120

    stats = server.client.get("/v1/stats").json()
    assert stats["total_requests"] - stats_before["total_requests"] == 10
    assert stats["total_errors"] - stats_before["total_errors"] == 2
    assert stats["total_tool_calls"] - stats_before["total_tool_calls"] == 10
    assert stats["total_tokens"] - stats_before["total_tokens"] == input_tokens + output_tokens
    assert stats["active_runs"] == 0 and stats["p95_response_ms"] >= stats["avg_response_ms"] * 0.5 > 0


def test_every_log_line_is_json_and_each_run_event_carries_the_run_ids(
    served: tuple[ServerProcess, MockLLM],
) -> None:
    """The whole stream parses line by line; a run's start, requests, tool calls and end all name it."""
    server, _ = served
    result = _run(server, session_id="ses-log-check")
    assert result["status_code"] == 200
    lines = [json.loads(line) for line in server.stdout_path.read_text().splitlines() if line]
    assert all({"event", "level", "timestamp", "component"} <= set(line) for line in lines)
    mine = [line for line in lines if line.get("run_id") == result["run_id"]]
    assert [e["event"] for e in mine] == ["run.started", "model.request", "tool.call", "model.request", "run.finished"]
    for event in mine:
        assert event["session_id"] == "ses-log-check" and event["user_id"] and event["agent"] == "assistant"
        assert event["component"] == "runtime"
    assert any(line["component"] == "uvicorn" for line in lines)


def test_a_canary_secret_never_reaches_logs_responses_or_metrics(served: tuple[ServerProcess, MockLLM]) -> None:
    """The provider key (logged and raised by a careless tool) and a request header's key stay redacted."""
    server, mock = served
    mock.enqueue(Reply.tool_call("leak"))
    failed = _run(server)
    assert failed["status_code"] == 500 and failed["error"]["type"] == "tool_error"
    run_id = next(
        json.loads(line)["run_id"]
        for line in reversed(server.stdout_path.read_text().splitlines())
        if '"run.finished"' in line
    )
    seen = [
        json.dumps(failed),
        server.client.get(f"/v1/runs/{run_id}").text,
        server.client.get("/metrics").text,
        server.client.get("/v1/stats").text,
        server.client.get("/health").text,
    ]
    log = server.output()
    assert "calling upstream with key [REDACTED]" in log and "upstream rejected key [REDACTED]" in log
    for text in [*seen, log]:
        assert KEY_CANARY not in text and HEADER_CANARY not in text
