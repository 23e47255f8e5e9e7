"""Background runs on `agentkeep serve`: real subprocesses, SIGKILL, the mock model counting requests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import (
    DURABLE_AGENT,
    durable_env,
    lines,
    run_status,
    submit,
    wait_finished,
    wait_for,
)
from tests.support.server import ServerProcess, free_port


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def _server(mock: MockLLM, tmp_path: Path, port: int | None = None, **extra: str) -> ServerProcess:
    env = durable_env(mock, f"sqlite:///{tmp_path / 'agentkeep.db'}", tmp_path, **extra)
    return ServerProcess(DURABLE_AGENT, tmp_path, env=env, port=port)


def test_a_background_run_is_accepted_at_once_and_walks_to_succeeded(mock_llm: MockLLM, tmp_path: Path) -> None:
    """202 + Location while the model is still thinking; then running; then succeeded, joined to its session."""
    mock_llm.enqueue(Reply.tool_call("append_line", {"text": "a"}).with_latency(1.0), Reply.text("done"))
    with _server(mock_llm, tmp_path) as server:
        run_id = submit(server, "write a", session_id="bg-1")
        assert run_status(server, run_id)["status"] in {"queued", "running"}
        wait_for(lambda: run_status(server, run_id)["status"] == "running", 30, "the run to start")
        run = wait_finished(server, run_id)
        assert run["status"] == "succeeded" and run["output"] == "done"
        assert run["usage"]["requests"] == 2 and run["usage"]["tool_calls"] == 1
        assert run["started_at"] and run["finished_at"]
        session = server.client.get("/v1/sessions/bg-1").json()
        assert [m["role"] for m in session["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert lines(tmp_path / "side.txt") == ["a"]


def test_a_failing_background_run_records_the_error(mock_llm: MockLLM, tmp_path: Path) -> None:
    """A provider error fails the run with `model_error`; the session stays empty and free."""
    mock_llm.enqueue(Reply.error(400, "no"))
    with _server(mock_llm, tmp_path) as server:
        run = wait_finished(server, submit(server, session_id="bg-2"))
        assert run["status"] == "failed" and run["error"]["type"] == "model_error"
        assert server.post_run(message="again", session_id="bg-2").status_code == 200


def test_kill_9_after_the_second_model_request_resumes_without_repeating_anything(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """3 model requests + 2 tool calls, SIGKILL while the 2nd tool call is in flight: after a restart the
    run succeeds, the mock saw exactly 3 requests, and each tool's line is written once."""
    mock_llm.enqueue(
        Reply.tool_call("append_line", {"text": "a"}),
        Reply.tool_call("append_line", {"text": "b"}),
        Reply.text("both written"),
    )
    keys = tmp_path / "side.txt.keys"
    port = free_port()  # the same address after the restart: the same executor, which resumes its runs
    first = _server(mock_llm, tmp_path, port, TOOL_SLEEP_S="1.5")
    with first:
        run_id = submit(first, "write a then b")
        # The 2nd tool call started, so the 2nd model request is checkpointed; its line is not written yet.
        wait_for(lambda: any(line.startswith("append_line b ") for line in lines(keys)), 30, "tool b to start")
        first.proc.kill()
        first.proc.wait()
    assert mock_llm.request_count == 2
    assert lines(tmp_path / "side.txt") == ["a"]

    with _server(mock_llm, tmp_path, port, TOOL_SLEEP_S="0") as second:
        run = wait_finished(second, run_id)
        assert run["status"] == "succeeded", run
        assert run["output"] == "both written"
        assert run["usage"]["requests"] == 3 and run["usage"]["tool_calls"] == 2
        history = second.client.get(f"/v1/sessions/{run['session_id']}").json()["messages"]
        assert [m["role"] for m in history].count("tool") == 2
    assert mock_llm.request_count == 3
    assert lines(tmp_path / "side.txt") == ["a", "b"]
    # The interrupted call of b ran again (it is idempotent) with the same idempotency key.
    entries = [line.split() for line in lines(keys)]
    b_keys = [key for name, text, key in entries if text == "b"]
    assert len(b_keys) == 2 and b_keys[0] == b_keys[1] and b_keys[0].startswith(f"{run_id}:")
    assert len({key for _, _, key in entries}) == 2


def test_cancel_mid_run_stops_at_the_next_step_and_frees_the_session(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Cancel while a tool runs: 200 `cancelled`; no further model request; the session is unchanged and usable."""
    mock_llm.enqueue(Reply.tool_call("append_line", {"text": "x"}))
    keys = tmp_path / "side.txt.keys"
    with _server(mock_llm, tmp_path, TOOL_SLEEP_S="1.0") as server:
        run_id = submit(server, session_id="bg-3")
        wait_for(lambda: lines(keys), 30, "the tool to start")
        cancelled = server.client.post(f"/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        wait_for(lambda: lines(tmp_path / "side.txt"), 10, "the tool call in flight to end")
        run = wait_finished(server, run_id)
        assert run["status"] == "cancelled" and run["error"]["type"] == "cancelled"
        assert mock_llm.request_count == 1
        assert server.client.get("/v1/sessions/bg-3").json()["messages"] == []
        assert server.post_run(message="next", session_id="bg-3").json()["status"] == "succeeded"
        again = server.client.post(f"/v1/runs/{run_id}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "cancelled"
        assert server.client.post("/v1/runs/run_nope/cancel").status_code == 404


def test_cancel_inside_a_slow_model_request_abandons_it(mock_llm: MockLLM, tmp_path: Path) -> None:
    """A model request in flight does not hold a cancel up until it answers (20 s away)."""
    mock_llm.enqueue(Reply.text("too late").with_latency(20))
    with _server(mock_llm, tmp_path) as server:
        run_id = submit(server)
        wait_for(lambda: mock_llm.request_count == 1, 30, "the model request to start")
        assert server.client.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
        wait_for(lambda: '"status": "cancelled"' in server.output(), 10, "the run itself to stop and log it")
        run = wait_finished(server, run_id)
        assert run["status"] == "cancelled" and run["output"] is None


def test_a_non_idempotent_tool_cut_mid_call_fails_the_run_instead_of_running_twice(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """SIGKILL inside `charge` (not declared idempotent): after the restart the run fails with
    `tool_interrupted`; `charge` never ran a second time and no model request was repeated."""
    mock_llm.enqueue(Reply.tool_call("charge", {"amount": 5}), Reply.text("paid"))
    keys = tmp_path / "side.txt.keys"
    port = free_port()
    with _server(mock_llm, tmp_path, port, TOOL_SLEEP_S="30") as first:
        run_id = submit(first, "pay 5", session_id="pay")
        wait_for(lambda: lines(keys), 30, "charge to start")
        first.proc.kill()
        first.proc.wait()
    with _server(mock_llm, tmp_path, port) as second:
        run = wait_finished(second, run_id)
        assert run["status"] == "failed" and run["error"]["type"] == "tool_interrupted", run
        assert "charge" in run["error"]["message"]
        assert second.client.get("/v1/sessions/pay").json()["messages"] == []
    assert [line.split()[0] for line in lines(keys)] == ["charge"]
    assert lines(tmp_path / "side.txt") == []
    assert mock_llm.request_count == 1


def test_a_redeploy_leaves_old_runs_waiting_until_runs_resume_moves_them(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Changed agent code is a new version: the killed run is not replayed by it on its own; `agentkeep
    runs resume` forks it onto the new version, which finishes it without repeating finished steps."""
    agent = tmp_path / "agent.py"
    agent.write_text(Path(DURABLE_AGENT).read_text())
    mock_llm.enqueue(
        Reply.tool_call("append_line", {"text": "a"}),
        Reply.tool_call("append_line", {"text": "b"}),
        Reply.text("finished on v2"),
    )
    keys, port = tmp_path / "side.txt.keys", free_port()
    env = durable_env(mock_llm, f"sqlite:///{tmp_path / 'agentkeep.db'}", tmp_path)
    with ServerProcess(str(agent), tmp_path, env={**env, "TOOL_SLEEP_S": "1.5"}, port=port) as v1:
        run_id = submit(v1, "write a then b")
        wait_for(lambda: any(" b " in line for line in lines(keys)), 30, "tool b to start")
        v1.proc.kill()
        v1.proc.wait()
    agent.write_text(agent.read_text() + "\n# v2: a redeploy with changed code\n")
    with ServerProcess(str(agent), tmp_path, env=env, port=port) as v2:
        wait_for(lambda: "durable.runs_of_other_versions" in v2.output(), 30, "the warning about old runs")
        assert run_status(v2, run_id)["status"] == "running" and mock_llm.request_count == 2
        done = subprocess.run(
            [sys.executable, "-m", "agentkeep", "runs", "resume", str(agent)],
            cwd=tmp_path,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert f"resumed {run_id} " in done.stdout and "1 run(s) resumed" in done.stdout
        run = wait_finished(v2, run_id)
        assert run["status"] == "succeeded" and run["output"] == "finished on v2", run
    assert mock_llm.request_count == 3
    assert lines(tmp_path / "side.txt") == ["a", "b"]


def test_a_shutdown_out_of_drain_time_leaves_the_run_to_resume_after_the_restart(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """SIGTERM with a tool call still running past AGENTKEEP_DRAIN_TIMEOUT_S: the process exits 0 and
    the run is not closed as `interrupted`; the restarted server finishes it."""
    mock_llm.enqueue(Reply.tool_call("append_line", {"text": "slow"}), Reply.text("resumed after the restart"))
    keys, port = tmp_path / "side.txt.keys", free_port()
    first = _server(mock_llm, tmp_path, port, TOOL_SLEEP_S="4", AGENTKEEP_DRAIN_TIMEOUT_S="1")
    with first:
        run_id = submit(first, "slow work")
        wait_for(lambda: lines(keys), 30, "the tool to start")
        first.signal()
        assert first.wait_exit(timeout=30) == 0
        assert '"event": "durable.started"' in first.output()
    with _server(mock_llm, tmp_path, port, TOOL_SLEEP_S="0") as second:
        assert run_status(second, run_id)["status"] in {"running", "succeeded"}
        run = wait_finished(second, run_id)
        assert run["status"] == "succeeded" and run["output"] == "resumed after the restart", run
    assert lines(tmp_path / "side.txt")[-1] == "slow"
    assert mock_llm.request_count == 2


def test_a_server_that_only_serves_synchronous_runs_never_starts_the_engine(mock_llm: MockLLM, tmp_path: Path) -> None:
    """On SQLite DBOS loads at the first background run, not before: cold starts and sync runs don't pay."""
    with _server(mock_llm, tmp_path) as server:
        assert server.post_run(message="hi").status_code == 200
        assert not (tmp_path / "agentkeep-dbos.db").exists()
        assert "durable.started" not in server.output()
        run = wait_finished(server, submit(server))
        assert run["status"] == "succeeded" and (tmp_path / "agentkeep-dbos.db").exists()
