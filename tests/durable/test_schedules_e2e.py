"""Schedules from agentkeep.toml: once per tick across a fleet of two workers; bad entries refused at startup."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

from agentkeep.testing.mock_llm import MockLLM
from tests.durable.support import DURABLE_AGENT, durable_env, run_status, wait_for
from tests.support.server import ServerProcess

TICKS = 3

SCHEDULES = """
[[schedules]]
name = "heartbeat-report"
cron = "*/2 * * * * *"
agent = "durable"
message = "report in"
"""


def _scheduled_runs(db: Path) -> list[tuple[str, str, str]]:
    """(run id, status, scheduled_at) of every run a schedule made."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT run_id, status, metadata FROM agentkeep_runs").fetchall()
    return [(run_id, status, json.loads(meta)["scheduled_at"]) for run_id, status, meta in rows if "schedule" in meta]


def test_a_schedule_fires_once_per_tick_with_two_workers_running(tmp_path: Path) -> None:
    """Every 2 s tick makes exactly one run, which succeeds, although two workers run the scheduler."""
    (tmp_path / "agentkeep.toml").write_text(SCHEDULES)
    db = tmp_path / "agentkeep.db"
    with MockLLM() as mock:
        env = durable_env(mock, f"sqlite:///{db}", tmp_path)
        with (
            ServerProcess(DURABLE_AGENT, tmp_path, env=env, args=["--no-worker"]) as api,
            ServerProcess(DURABLE_AGENT, tmp_path, env=env, command="worker"),
            ServerProcess(DURABLE_AGENT, tmp_path, env=env, command="worker"),
        ):
            wait_for(
                lambda: len({at for _, status, at in _scheduled_runs(db) if status == "succeeded"}) >= TICKS,
                60,
                f"{TICKS} ticks to run",
            )
            runs = _scheduled_runs(db)
            per_tick = Counter(at for _, _, at in runs)
            assert set(per_tick.values()) == {1}, per_tick
            finished = [run_id for run_id, status, _ in runs if status == "succeeded"]
            first = run_status(api, finished[0])
            assert first["metadata"]["schedule"] == "heartbeat-report" and first["agent"] == "durable"
            prompts = [r["messages"][-1]["content"] for r in mock.requests]
            assert set(prompts) == {"report in"} and len(prompts) >= len(finished)


def test_a_schedule_naming_an_unknown_agent_stops_the_server_before_it_binds(tmp_path: Path) -> None:
    """One clear line and exit status 2, before anything is served."""
    (tmp_path / "agentkeep.toml").write_text(SCHEDULES.replace('agent = "durable"', 'agent = "ghost"'))
    done = subprocess.run(
        [sys.executable, "-m", "agentkeep", "serve", DURABLE_AGENT, "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "x", "SIDE_EFFECT_FILE": str(tmp_path / "s")},
    )
    assert done.returncode == 2
    assert "schedule 'heartbeat-report': no agent named 'ghost'" in done.stderr
    assert "Traceback" not in done.stderr
