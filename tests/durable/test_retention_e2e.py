"""Retention: the worker prunes finished runs and their DBOS checkpoints after AGENTKEEP_RUN_RETENTION_DAYS."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import DURABLE_AGENT, durable_env, submit, wait_finished, wait_for
from tests.support.server import ServerProcess

RETENTION_S = 3.0


def _checkpoints(system_db: Path, run_id: str) -> int:
    total = 0
    with sqlite3.connect(system_db) as conn:
        for table in ("operation_outputs", "workflow_status"):
            (count,) = conn.execute(f"SELECT count(*) FROM {table} WHERE workflow_uuid = ?", (run_id,)).fetchone()
            total += int(count)
    return total


def test_a_finished_run_and_its_checkpoints_are_pruned_after_the_retention_period(tmp_path: Path) -> None:
    """The run answers 200, then 404 once it is older than the retention; its DBOS rows are gone too;
    the session it wrote to keeps its history."""
    with MockLLM() as mock:
        mock.enqueue(Reply.tool_call("append_line", {"text": "x"}), Reply.text("kept in the session"))
        env = durable_env(
            mock,
            f"sqlite:///{tmp_path / 'agentkeep.db'}",
            tmp_path,
            AGENTKEEP_RUN_RETENTION_DAYS=str(RETENTION_S / 86400),
            AGENTKEEP_RECOVERY_S="1.2",  # an upkeep pass every 0.2 s
        )
        with ServerProcess(DURABLE_AGENT, tmp_path, env=env) as server:
            run_id = submit(server, "remember", session_id="kept")
            assert wait_finished(server, run_id)["status"] == "succeeded"
            system_db = tmp_path / "agentkeep-dbos.db"
            assert _checkpoints(system_db, run_id) >= 4  # the workflow and its steps
            wait_for(lambda: server.client.get(f"/v1/runs/{run_id}").status_code == 404, 30, "the run to be pruned")
            wait_for(lambda: _checkpoints(system_db, run_id) == 0, 30, "its checkpoints to be pruned")
            history = server.client.get("/v1/sessions/kept").json()["messages"]
            assert history[-1]["content"] == "kept in the session"
