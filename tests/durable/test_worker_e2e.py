"""A fleet: `serve --no-worker` takes runs, `agentkeep worker` processes execute them; takeover of a dead worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import DURABLE_AGENT, durable_env, lines, run_status, submit, wait_finished, wait_for
from tests.support.server import ServerProcess

RECOVERY_S = 4.0


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def _fleet_env(mock: MockLLM, database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return durable_env(mock, database_url, tmp_path, AGENTKEEP_RECOVERY_S=str(RECOVERY_S), **extra)


def test_serve_no_worker_only_queues_and_a_worker_executes(mock_llm: MockLLM, tmp_path: Path) -> None:
    """The API process executes nothing; a queued run can be cancelled; a worker then runs the rest."""
    env = _fleet_env(mock_llm, f"sqlite:///{tmp_path / 'agentkeep.db'}", tmp_path)
    mock_llm.enqueue(Reply.tool_call("append_line", {"text": "kept"}), Reply.text("done"))
    with ServerProcess(DURABLE_AGENT, tmp_path, env=env, args=["--no-worker"]) as api:
        doomed = submit(api, "never runs", session_id="s-doomed")
        cancelled = api.client.post(f"/v1/runs/{doomed}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        kept = submit(api, "runs on the worker", session_id="s-kept")
        assert run_status(api, kept)["status"] == "queued"
        assert mock_llm.request_count == 0
        with ServerProcess(DURABLE_AGENT, tmp_path, env=env, command="worker") as worker:
            run = wait_finished(api, kept)
            assert run["status"] == "succeeded" and run["output"] == "done"
            assert f'"run_id": "{kept}"' in worker.output() and f'"run_id": "{kept}"' not in api.output()
            assert worker.client.get("/health").json()["status"] == "healthy"
            assert worker.client.get("/ready").json() == {"ready": True}
            assert "agentkeep_runs_total" in worker.client.get("/metrics").text
            assert worker.post_run(message="hi").status_code == 404  # a worker serves no API
        assert run_status(api, doomed)["status"] == "cancelled"
        # The cancelled run's session is free again; only the kept run's two requests reached the model.
        assert api.post_run(message="sync", session_id="s-doomed").status_code == 200
    assert mock_llm.request_count == 3
    assert lines(tmp_path / "side.txt") == ["kept"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_dead_workers_run_is_finished_by_the_other_within_recovery_s(
    backend: str, mock_llm: MockLLM, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two workers; SIGKILL the one executing a run mid-run: the other takes it over within
    AGENTKEEP_RECOVERY_S and finishes it; no model request or finished tool call happens twice."""
    url = f"sqlite:///{tmp_path / 'agentkeep.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    env = _fleet_env(mock_llm, url, tmp_path, TOOL_SLEEP_S="1.0")
    mock_llm.enqueue(
        Reply.tool_call("append_line", {"text": "a"}),
        Reply.tool_call("append_line", {"text": "b"}),
        Reply.text("finished elsewhere"),
    )
    with (
        ServerProcess(DURABLE_AGENT, tmp_path, env=env, args=["--no-worker"]) as api,
        ServerProcess(DURABLE_AGENT, tmp_path, env=env, command="worker") as one,
        ServerProcess(DURABLE_AGENT, tmp_path, env=env, command="worker") as two,
    ):
        run_id = submit(api)
        keys = tmp_path / "side.txt.keys"
        wait_for(lambda: any(" b " in line for line in lines(keys)), 30, "the 2nd tool call to start")
        running, survivor = (one, two) if f'"run_id": "{run_id}"' in one.output() else (two, one)
        running.proc.kill()
        running.proc.wait()
        run = wait_finished(api, run_id, timeout=RECOVERY_S + 5)
        assert run["status"] == "succeeded" and run["output"] == "finished elsewhere"
        assert '"event": "durable.takeover"' in survivor.output()
        assert mock_llm.request_count == 3
        assert lines(tmp_path / "side.txt") == ["a", "b"]
