"""How `agentkeep serve` presents itself once it listens: the banner, the log format it picks, `--reload`,
and `/live` on the worker too."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from agentkeep.testing.mock_llm import MockLLM
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import ServerProcess, free_port
from tests.support.services import fresh_postgres_database

PASSWORD = "banner-must-not-show-this"

_AGENT = """
from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

agent = Agent(TestModel(custom_output_text={text!r}), name="echo")
"""


def _stderr(server: ServerProcess) -> str:
    server.output()  # flushes the files
    return server.stderr_path.read_text()


def test_the_banner_says_where_what_and_on_which_database_without_credentials(tmp_path: Path) -> None:
    """Once listening, stderr carries the console and /docs URLs, each agent with its model, the
    database with neither user nor password, the auth mode and the worker count."""
    with fresh_postgres_database() as url, MockLLM() as mock:
        scheme, rest = url.split("://", 1)
        with_password = f"{scheme}://postgres:{PASSWORD}@{rest.split('@', 1)[-1]}"
        with ServerProcess(MOCK_AGENT, tmp_path, env=server_env(mock, with_password)) as server:
            banner = _stderr(server)
            stdout = server.stdout_path.read_text()
    base = f"http://127.0.0.1:{server.port}"
    assert f"console   {base}/" in banner and f"API docs  {base}/docs" in banner
    assert "assistant (openai:mock)" in banner and "helper (openai:mock)" in banner
    database = next(line for line in banner.splitlines() if line.strip().startswith("database"))
    assert database.split()[-1] == "postgresql://" + rest.split("@", 1)[-1]
    assert "auth      off while bound to loopback" in banner
    assert "workers   1 process" in banner
    assert PASSWORD not in banner + stdout and "postgres:" not in banner


def test_logs_are_json_lines_when_stdout_is_not_a_terminal(server: ServerProcess) -> None:
    """AGENTKEEP_LOG_FORMAT=auto (the default) with stdout in a file: every line is JSON, the start included."""
    server.client.get("/v1/runs/run_nope")
    lines = [line for line in server.stdout_path.read_text().splitlines() if line.strip()]
    events = [json.loads(line)["event"] for line in lines]
    assert "server.started" in events


def test_logs_are_console_lines_on_a_terminal_and_json_when_forced(tmp_path: Path) -> None:
    """auto on a terminal renders for a person (no JSON); AGENTKEEP_LOG_FORMAT=json forces JSON there too."""

    def started_line(log_format: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKEEP_")}
        env.update(OPENAI_API_KEY="x", AGENTKEEP_DATABASE_URL=f"sqlite:///{tmp_path / 'agentkeep.db'}")
        if log_format:
            env["AGENTKEEP_LOG_FORMAT"] = log_format
        leader, follower = pty.openpty()
        cmd = [sys.executable, "-m", "agentkeep", "serve", MOCK_AGENT, "--port", str(free_port())]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=follower, stderr=subprocess.DEVNULL)
        os.close(follower)
        seen = b""
        try:
            deadline = time.monotonic() + 30
            while b"server.started" not in seen and time.monotonic() < deadline:
                if select.select([leader], [], [], 0.5)[0]:
                    seen += os.read(leader, 65536)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            os.close(leader)
        text = seen.decode(errors="replace")
        return next(line for line in text.splitlines() if "server.started" in line)

    console = started_line(None)
    assert not console.lstrip().startswith("{") and "server.started" in console
    assert json.loads(started_line("json"))["event"] == "server.started"


def test_reload_serves_the_edited_agent_without_a_restart_by_hand(tmp_path: Path) -> None:
    """`serve --reload`: editing the TARGET file restarts the child; the next run answers from the
    edited code, on the same port, and SIGTERM then stops the supervisor with exit 0."""
    agent = tmp_path / "agent.py"
    agent.write_text(_AGENT.format(text="before the edit"))
    with ServerProcess(str(agent), tmp_path, args=["--reload"]) as server:
        first = server.post_run(message="hi")
        assert first.status_code == 200 and first.json()["output"] == "before the edit"
        time.sleep(0.05)  # a coarse file clock must see a newer modification time
        agent.write_text(_AGENT.format(text="after the edit"))
        deadline = time.monotonic() + 60
        output = None
        while output != "after the edit":
            assert time.monotonic() < deadline, f"still serving {output!r}: {server.output()}"
            try:
                answer = server.post_run(message="hi")
                output = answer.json().get("output") if answer.status_code == 200 else None
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert f"watching {tmp_path}" in _stderr(server)
        server.signal(signal.SIGTERM)
        assert server.wait_exit(60) == 0
        assert "Traceback" not in server.output()


def test_the_worker_answers_live_too(tmp_path: Path) -> None:
    """`agentkeep worker` serves /live beside /health and /ready: Kubernetes' liveness probe for both."""
    env = {"OPENAI_API_KEY": "x", "AGENTKEEP_DATABASE_URL": f"sqlite:///{tmp_path / 'agentkeep.db'}"}
    with ServerProcess(MOCK_AGENT, tmp_path, env=env, command="worker") as worker:
        answer = worker.client.get("/live")
        assert answer.status_code == 200 and answer.json() == {"live": True}
        assert worker.client.get("/v1/runs").status_code == 404  # the API is not a worker's
