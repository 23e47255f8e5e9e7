"""An AgentApp's deps on the durable paths: a task's `ask()`, a schedule's tick, and a background run
resumed by the next process after `kill -9` (deps are never serialized: that process builds them
again). A real `agentkeep serve`, the bank agent of tests/agents/bank_agent.py, the mock model."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM
from tests.durable.support import run_status, submit, wait_finished, wait_for
from tests.server.test_agent_app_e2e import BALANCE_THEN_ANSWER, BANK, bank_env, log_lines, sent_to_model
from tests.support.server import ServerProcess, free_port


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def test_a_tasks_ask_of_a_served_agent_gets_its_deps_with_the_tasks_run(mock_llm: MockLLM, tmp_path: Path) -> None:
    """`ask(support_agent, ...)` inside the `statement` task: the factory sees the task's run id and
    session, and the agent's name; the agent reads the lifespan's database."""
    mock_llm.set_default(BALANCE_THEN_ANSWER)
    with ServerProcess(f"{BANK}:app", tmp_path, env=bank_env(mock_llm, tmp_path)) as server:
        accepted = server.client.post("/v1/tasks/statement", json={"input": {"question": "Balance?"}})
        assert accepted.status_code == 202, accepted.text
        run = wait_finished(server, accepted.json()["run_id"])
        assert run["status"] == "succeeded" and run["output"] == "Here is your balance.", run
    [deps] = log_lines(tmp_path, "deps")
    assert deps[:4] == [run["run_id"], run["session_id"], "anonymous", "bank"]
    assert "$123.45" in sent_to_model(mock_llm.requests[-1])


def test_a_scheduled_run_gets_its_deps(mock_llm: MockLLM, tmp_path: Path) -> None:
    """A tick of `[[schedules]]` runs the app's agent with deps built for the tick's run."""
    (tmp_path / "agentkeep.toml").write_text(
        '[[schedules]]\nname = "nightly"\ncron = "* * * * * *"\nagent = "bank"\nmessage = "Balance?"\nuser = "ops"\n'
    )
    mock_llm.set_default(BALANCE_THEN_ANSWER)
    with ServerProcess(f"{BANK}:app", tmp_path, env=bank_env(mock_llm, tmp_path)):
        wait_for(lambda: _succeeded_ticks(tmp_path), 60, "a scheduled run to succeed")
    run_id = _succeeded_ticks(tmp_path)[0]
    deps = {line[0]: line for line in log_lines(tmp_path, "deps")}
    assert deps[run_id][2:4] == ["ops", "bank"]


def test_a_background_run_resumed_after_kill_9_gets_deps_from_the_new_process(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """SIGKILL while the tool sleeps: the next process resumes the run, calls the factory again itself
    (its own pid, its own lifespan) and the run succeeds with the customer's balance."""
    mock_llm.set_default(BALANCE_THEN_ANSWER)
    port = free_port()  # the same executor after the restart, which resumes its runs
    with ServerProcess(
        f"{BANK}:app", tmp_path, env=bank_env(mock_llm, tmp_path, TOOL_SLEEP_S="30"), port=port
    ) as first:
        run_id = submit(first, "Balance?", metadata={"customer_id": 7})
        wait_for(lambda: mock_llm.request_count == 1, 30, "the tool call to start")
        first_pid = str(first.proc.pid)
        first.proc.kill()
        first.proc.wait()
    with ServerProcess(f"{BANK}:app", tmp_path, env=bank_env(mock_llm, tmp_path), port=port) as second:
        run = wait_finished(second, run_id)
        assert run["status"] == "succeeded", run
        second_pid = str(second.proc.pid)
        assert run_status(second, run_id)["metadata"] == {"customer_id": 7}
    calls = [(line[4], line[5]) for line in log_lines(tmp_path, "deps") if line[0] == run_id]
    assert calls == [("7", first_pid), ("7", second_pid)]
    assert ["enter", second_pid] in log_lines(tmp_path, "lifespan")
    assert "$9.50" in sent_to_model(mock_llm.requests[-1])


def _succeeded_ticks(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "agentkeep.db") as conn:
        rows = conn.execute("SELECT run_id, status, metadata FROM agentkeep_runs").fetchall()
    return [run_id for run_id, status, meta in rows if status == "succeeded" and "schedule" in json.loads(meta)]
