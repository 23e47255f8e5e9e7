"""Every way `agentkeep serve` can fail to start is one line on stderr that names the setting or flag
to change: exit 2 for a mistake in the configuration, 1 for an environment that refuses (a database
that does not answer, a port in use). Never a traceback, never a password, and never after a line
claiming the server started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.server import AGENTS_DIR, free_port
from tests.support.services import POSTGRES_URL, require

MOCK_AGENT = str(AGENTS_DIR / "mock_agent.py")
PASSWORD = "hunter2-not-for-your-eyes"
# What uvicorn and agentkeep log once the server is up: none of it may precede a failure.
STARTED = ("Application startup complete", "server.started", "Uvicorn running", "Stop with Ctrl+C")


def _serve(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, command: str = "serve"
) -> subprocess.CompletedProcess[str]:
    """`agentkeep COMMAND ARGS` with a bare environment (no AGENTKEEP_* from the caller's), to completion."""
    base = {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "x"}
    if "PYTHONPATH" in os.environ:  # a source checkout on the path, as the other end-to-end tests run it
        base["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [sys.executable, "-m", "agentkeep", command, *args],
        cwd=tmp_path,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The single error line, after checking the exit status, the line count and what must never show."""
    everything = proc.stdout + proc.stderr
    assert proc.returncode == code, everything
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("agentkeep: error: "), line
    for needle in needles:
        assert needle in line, line
    assert "Traceback" not in everything
    assert PASSWORD not in everything
    assert not [claim for claim in STARTED if claim in everything], everything
    return line


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("AGENTKEEP_RATE_LIMIT", "garbage", "60/minute"),
        ("AGENTKEEP_READ_RATE_LIMIT", "often", "60/minute"),
        ("AGENTKEEP_MAX_BODY_BYTES", "lots", "integer"),
        ("AGENTKEEP_MAX_CONCURRENT_RUNS", "0", "greater than or equal to 1"),
        ("AGENTKEEP_DRAIN_TIMEOUT_S", "soon", "number"),
        ("AGENTKEEP_LOG_FORMAT", "xml", "'auto', 'json' or 'console'"),
        ("AGENTKEEP_LOG_LEVEL", "loud", "log level"),
        ("AGENTKEEP_AUTH", "maybe", "'auto', 'required' or 'off'"),
        ("AGENTKEEP_TELEMETRY", "perhaps", "boolean"),
        ("AGENTKEEP_BUDGET_ALERTS_USD", "plenty", "USD"),
        ("AGENTKEEP_FETCH_PORTS", "http", "80,443"),
        ("AGENTKEEP_WEBHOOK_ALLOW_NETWORKS", "the-office", "network"),
        ("AGENTKEEP_PRICES_FILE", "/no/such/prices.json", "No such file"),
        ("AGENTKEEP_MODEL", "nosuch:model", "nosuch:model"),
        ("AGENTKEEP_REDIS_URL", f"memcached://me:{PASSWORD}@127.0.0.1:1", "redis://"),
    ],
)
def test_a_setting_that_does_not_parse_exits_2_naming_it(tmp_path: Path, variable: str, value: str, says: str) -> None:
    """Each setting's parse error names the variable and what it should look like."""
    proc = _serve(tmp_path, MOCK_AGENT, "--port", str(free_port()), env={variable: value})
    _one_line(proc, 2, variable, says)


def test_a_database_that_is_not_supported_exits_2_without_its_password(tmp_path: Path) -> None:
    """`mysql://` is a mistake in AGENTKEEP_DATABASE_URL: exit 2, the two URL schemes that work, no password."""
    url = f"mysql://app:{PASSWORD}@127.0.0.1/db"
    proc = _serve(tmp_path, MOCK_AGENT, "--port", str(free_port()), env={"AGENTKEEP_DATABASE_URL": url})
    _one_line(proc, 2, "AGENTKEEP_DATABASE_URL", "'mysql'", "postgresql://")


def test_a_database_that_does_not_answer_exits_1_before_the_server_starts(tmp_path: Path) -> None:
    """Nothing listens on port 1: exit 1 with the refusal and the setting to check, without the
    user name or the password of the URL, and before uvicorn or agentkeep says it started."""
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:1/agentkeep"
    proc = _serve(tmp_path, MOCK_AGENT, "--port", str(free_port()), env={"AGENTKEEP_DATABASE_URL": url})
    line = _one_line(proc, 1, "cannot open the database", "127.0.0.1:1", "AGENTKEEP_DATABASE_URL")
    assert "app" not in line.split("database", 1)[1].split("(")[0]


def test_a_database_the_server_does_not_have_exits_1_with_the_servers_reason(tmp_path: Path) -> None:
    """The real PostgreSQL, asked for a database it does not hold: its own reason, on one line."""
    require(POSTGRES_URL, 5432, "PostgreSQL")
    parts = urlsplit(POSTGRES_URL)
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}:{parts.port or 5432}"
    url = urlunsplit(parts._replace(netloc=netloc, path="/agentkeep_no_such_database"))
    proc = _serve(tmp_path, MOCK_AGENT, "--port", str(free_port()), env={"AGENTKEEP_DATABASE_URL": url})
    _one_line(proc, 1, "agentkeep_no_such_database", "does not exist", "AGENTKEEP_DATABASE_URL")


def test_a_sqlite_file_that_cannot_be_created_exits_1(tmp_path: Path) -> None:
    """A SQLite path under a file (not a directory) cannot be opened: exit 1, naming the path and the setting."""
    (tmp_path / "not-a-dir").write_text("")
    url = f"sqlite:///{tmp_path / 'not-a-dir' / 'agentkeep.db'}"
    proc = _serve(tmp_path, MOCK_AGENT, "--port", str(free_port()), env={"AGENTKEEP_DATABASE_URL": url})
    _one_line(proc, 1, "not-a-dir", "AGENTKEEP_DATABASE_URL")


def test_a_worker_whose_database_does_not_answer_exits_1_with_one_line(tmp_path: Path) -> None:
    """`agentkeep worker` starts the same way: the same line, no traceback."""
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:1/agentkeep"
    proc = _serve(
        tmp_path, MOCK_AGENT, "--port", str(free_port()), env={"AGENTKEEP_DATABASE_URL": url}, command="worker"
    )
    _one_line(proc, 1, "cannot open the database", "AGENTKEEP_DATABASE_URL")


def test_a_port_in_use_exits_1_saying_how_to_pick_another_before_anything_starts(tmp_path: Path) -> None:
    """Another process listens on the port: exit 1 with `--port` and `PORT` as the way out, and the
    app never starts (no 'Application startup complete.' before the error, as uvicorn alone prints)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve(tmp_path, MOCK_AGENT, "--port", str(port))
    _one_line(proc, 1, f"port {port} is in use", "--port", "PORT for make run")
    assert not (tmp_path / "data").exists()  # the database was never opened


def test_a_bad_target_with_reload_is_one_line_too(tmp_path: Path) -> None:
    """`serve --reload` checks the TARGET before it supervises anything: a syntax error is exit 2."""
    (tmp_path / "agent.py").write_text("def broken(:\n")
    proc = _serve(tmp_path, "agent.py", "--reload", "--port", str(free_port()))
    _one_line(proc, 2, "agent.py", "SyntaxError")
