"""`serve` starts the durable engine off the path to readiness: a database that fails while it launches
is retried with backoff instead of ending the process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import structlog
from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

from agentkeep.config import Settings
from agentkeep.services import build_services


def _settings(database: Path) -> Settings:
    return Settings(_env_file=None, database_url=f"sqlite:///{database}", auth="off", recovery_s=2.0)  # type: ignore[call-arg, arg-type]


async def test_an_engine_whose_database_fails_at_launch_starts_once_the_database_answers(tmp_path: Path) -> None:
    """DBOS's database file cannot be opened (a directory stands in its place): the launch fails and is
    logged, and once the obstacle is gone the next attempt starts the engine, with no restart."""
    database = tmp_path / "agentkeep.db"
    obstacle = tmp_path / "agentkeep-dbos.db"  # where DBOS keeps its state beside ours
    obstacle.mkdir()
    services = await build_services(_settings(database), {"a": Agent(TestModel(), name="a")})
    try:
        with structlog.testing.capture_logs() as logs:
            starting = asyncio.ensure_future(services.durable.start_when_possible())
            deadline = time.monotonic() + 30
            while not any(entry["event"] == "durable.start_failed" for entry in logs):
                assert time.monotonic() < deadline, "the failed launch was never reported"
                assert not starting.done(), f"gave up instead of retrying: {starting}"
                await asyncio.sleep(0.05)
            obstacle.rmdir()
            await asyncio.wait_for(starting, timeout=30)
        assert services.durable.started
        failures: list[dict[str, Any]] = [entry for entry in logs if entry["event"] == "durable.start_failed"]
        assert failures and failures[0]["log_level"] == "warning"
    finally:
        await services.aclose()
