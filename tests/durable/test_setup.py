"""How DBOS is set up: where its database lives, who the process is, which code version it runs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from agentkeep.config import Settings
from agentkeep.durable.setup import identity, route_dbos_logs, system_database_url
from agentkeep.errors import ConfigError


def test_the_system_database_lives_beside_agentkeeps() -> None:
    """Same SQLite directory (own file); same PostgreSQL database through psycopg; no in-memory SQLite."""
    assert system_database_url("sqlite:///./data/agentkeep.db") == "sqlite:///data/agentkeep-dbos.db"
    assert system_database_url("sqlite:////var/lib/ak/state") == "sqlite:////var/lib/ak/state-dbos.db"
    pg = system_database_url("postgresql://u:secret@db:5432/agentkeep")
    assert pg == "postgresql+psycopg://u:secret@db:5432/agentkeep"
    with pytest.raises(ConfigError, match="database file"):
        system_database_url("sqlite:///:memory:")


def test_the_version_follows_the_agent_code_and_the_executor_its_address(tmp_path: Path) -> None:
    """Editing the TARGET file changes the version; the same file and port give the same identity."""
    agent = tmp_path / "agent.py"
    agent.write_text("A = 1\n")
    settings = Settings()
    first = identity(settings, source=agent, port=8000)
    assert first == identity(settings, source=agent, port=8000)
    assert first.executor_id.endswith(":8000")
    agent.write_text("A = 2\n")
    assert identity(settings, source=agent, port=8000).version != first.version
    pinned = identity(Settings(app_version="v7", executor_id="w-1"), source=agent, port=8000)
    assert (pinned.version, pinned.executor_id) == ("v7", "w-1")


def test_dbos_logs_reach_the_root_logger_but_not_its_cancellation_noise(caplog: pytest.LogCaptureFixture) -> None:
    """Warnings propagate (to agentkeep's JSON logs); DBOS's error about an awaited cancelled run is dropped."""
    route_dbos_logs()
    logger = logging.getLogger("dbos")

    class DBOSAwaitedWorkflowCancelledError(Exception):
        pass

    with caplog.at_level(logging.WARNING):
        logger.warning("queue trouble")
        logger.error("Exception encountered", exc_info=DBOSAwaitedWorkflowCancelledError("x"))
        logger.warning("Workflow w was cancelled during execution. Waiting for the recorded outcome")
    assert [r.getMessage() for r in caplog.records] == ["queue trouble"]


def test_importing_the_server_does_not_import_dbos() -> None:
    """Synchronous serving and cold starts do not pay for DBOS: it loads when the engine starts."""
    code = "import agentkeep.server, agentkeep.durable, sys; assert 'dbos' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
