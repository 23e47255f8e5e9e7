"""An agent with deps, served as an `agentkeep.AgentApp`: a real `agentkeep serve`, a real SQLite database
opened by the app's lifespan, the mock model server (tests/agents/bank_agent.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import lines, wait_finished, wait_for
from tests.server.conftest import server_env
from tests.support.server import AGENTS_DIR, ServerProcess

BANK = str(AGENTS_DIR / "bank_agent.py")
BALANCE_THEN_ANSWER = Reply.call_then_answer("customer_balance", {}, "Here is your balance.")


def bank_env(mock: MockLLM, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A server on the mock model, its bank database created with two customers."""
    db = tmp_path / "bank.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS customers(id INTEGER PRIMARY KEY, name TEXT, balance REAL)")
        conn.execute("INSERT OR REPLACE INTO customers VALUES (123, 'John', 123.45), (7, 'Ada', 9.5)")
    return server_env(
        mock,
        f"sqlite:///{tmp_path / 'agentkeep.db'}",
        BANK_DB=str(db),
        AGENT_LOG=str(tmp_path / "agent.log"),
        AGENTKEEP_RATE_LIMIT="100000/minute",
        **extra,
    )


def log_lines(tmp_path: Path, kind: str) -> list[list[str]]:
    return [line.split()[1:] for line in lines(tmp_path / "agent.log") if line.startswith(kind + " ")]


def sent_to_model(request: dict[str, Any]) -> str:
    return json.dumps(request["messages"])


def test_each_run_gets_deps_from_the_factory_on_every_path(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Sync, streamed, background and a second turn: each run's factory call sees its own run and the
    request's metadata, the instructions and the tool read the lifespan's database, and the lifespan
    is entered once for the process and exited once at shutdown."""
    mock_llm.set_default(BALANCE_THEN_ANSWER)
    with ServerProcess(f"{BANK}:app", tmp_path, env=bank_env(mock_llm, tmp_path)) as server:
        sync = server.post_run(message="What is my balance?", metadata={"customer_id": 7}, session_id="ada")
        assert sync.status_code == 200, sync.text
        assert "The customer's name is 'Ada'" in sent_to_model(mock_llm.requests[0])
        assert '"content": "$9.50"' in sent_to_model(mock_llm.requests[1])

        streamed = server.post_run(message="And now?", metadata={"customer_id": 7}, session_id="ada", stream=True)
        assert "event: run.completed" in streamed.text, streamed.text
        second_turn = mock_llm.requests[2]
        assert "What is my balance?" in sent_to_model(second_turn) and "'Ada'" in sent_to_model(second_turn)

        background = server.post_run(message="Balance?", metadata={"customer_id": 123}, background=True)
        assert background.status_code == 202, background.text
        run = wait_finished(server, background.json()["run_id"])
        assert run["status"] == "succeeded", run
        assert "'John'" in sent_to_model(mock_llm.requests[4]) and "$123.45" in sent_to_model(mock_llm.requests[5])
        pid = str(server.proc.pid)
        assert server.client.get("/v1/agents").json()["agents"][0]["name"] == "bank"

    deps = log_lines(tmp_path, "deps")
    stream_id = next(line for line in streamed.text.splitlines() if line.startswith("data: "))
    run_ids = [sync.json()["run_id"], json.loads(stream_id[6:])["run_id"], run["run_id"]]
    assert [d[0] for d in deps] == run_ids
    assert [(d[1], d[2], d[3], d[4]) for d in deps[:2]] == [("ada", "anonymous", "bank", "7")] * 2
    assert deps[2][4] == "123" and all(d[5] == pid for d in deps)
    assert log_lines(tmp_path, "lifespan") == [["enter", pid], ["exit", pid]]


def test_the_lifespan_is_exited_after_the_runs_in_flight_drain(mock_llm: MockLLM, tmp_path: Path) -> None:
    """SIGTERM while a run's tool is reading the database: the run still succeeds, and the
    connection is closed only after it answered."""
    mock_llm.set_default(BALANCE_THEN_ANSWER)
    env = bank_env(mock_llm, tmp_path, TOOL_SLEEP_S="1.0")
    with ServerProcess(f"{BANK}:app", tmp_path, env=env) as server:
        background = server.post_run(message="Balance?", background=True)
        run_id = background.json()["run_id"]
        wait_for(lambda: mock_llm.request_count == 1, 30, "the tool call to start")
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
    # The run finished in this process, before the lifespan closed the database it was reading.
    with sqlite3.connect(tmp_path / "agentkeep.db") as conn:
        [(status, finished_at)] = conn.execute(
            "SELECT status, finished_at FROM agentkeep_runs WHERE run_id = ?", (run_id,)
        ).fetchall()
    assert status == "succeeded" and finished_at is not None
    assert '"content": "$123.45"' in sent_to_model(mock_llm.requests[1])
    events = [line.split()[:2] for line in lines(tmp_path / "agent.log")]
    assert [e for e in events if e[0] != "deps"] == [["lifespan", "enter"], ["balance", "123"], ["lifespan", "exit"]]


def test_a_deps_factory_that_raises_fails_the_run_naming_the_factory(mock_llm: MockLLM, tmp_path: Path) -> None:
    """500 internal_error that names the factory and its exception's type, never its text; no model
    request is made and the run is recorded failed."""
    with ServerProcess(f"{BANK}:broken_deps", tmp_path, env=bank_env(mock_llm, tmp_path)) as server:
        response = server.post_run(message="What is my balance?")
        assert response.status_code == 500, response.text
        error = response.json()["error"]
        assert error == {
            "type": "internal_error",
            "message": "the deps factory of agent 'bank' failed (ConnectionError)",
        }
        runs = server.client.get("/v1/runs").json()["runs"]
        assert [(r["status"], r["error"]["type"]) for r in runs] == [("failed", "internal_error")]
    assert mock_llm.request_count == 0


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_lifespan_that_raises_stops_the_process_with_one_line(
    mock_llm: MockLLM, tmp_path: Path, command: str
) -> None:
    """Exit 1; stderr is one line naming the agent's lifespan and the exception's type; no traceback
    anywhere and the exception's text (a DSN with a password) not on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKEEP_")} | bank_env(mock_llm, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "agentkeep", command, f"{BANK}:broken_lifespan", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert proc.stderr.splitlines() == [
        "agentkeep: error: the lifespan of agent 'bank' failed at startup (ConnectionError)"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "hunter2" not in proc.stderr


def test_an_agent_that_needs_deps_served_bare_fails_every_run_naming_the_fix(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Its deps_type is set and no AgentApp gives deps: each run is 500 naming `agentkeep.AgentApp`,
    nothing reaches the model, and the server warned once when it started."""
    with ServerProcess(f"{BANK}:bare", tmp_path, env=bank_env(mock_llm, tmp_path)) as server:
        for stream in (False, True):
            response = server.post_run(message="What is my balance?", stream=stream)
            body = response.text
            assert "wrap it in agentkeep.AgentApp(agent, deps=...)" in body, body
            assert "deps_type=SupportDependencies" in body
        output = server.output()
    assert mock_llm.request_count == 0
    warnings = [json.loads(line) for line in output.splitlines() if '"agent.deps_missing"' in line]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning" and warnings[0]["agent"] == "bare"
