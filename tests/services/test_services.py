"""The composition root: one build gives a process every part it runs agents with, on a real SQLite
file, and `aclose()` gives the database back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

from agentkeep.budget import Budget
from agentkeep.config import Settings
from agentkeep.errors import ConfigError
from agentkeep.hooks import Hook
from agentkeep.observability import Telemetry
from agentkeep.observability.steps import StepRecorder
from agentkeep.resilience import Resilience
from agentkeep.runtime import RunRequest
from agentkeep.services import build_services
from agentkeep.stores.backup import DatabaseLock


def _settings(database: Path, **cfg: Any) -> Settings:
    return Settings(_env_file=None, database_url=f"sqlite:///{database}", auth="off", **cfg)  # type: ignore[call-arg, arg-type]


def _agents() -> dict[str, Agent[Any, Any]]:
    return {"a": Agent(TestModel(custom_output_text="hello"), name="a")}


def _free(database: Path) -> bool:
    """Whether `agentkeep restore` could take the database now: no open store holds its lock."""
    lock = DatabaseLock(database)
    taken = lock.acquire(exclusive=True)
    lock.release()
    return taken


async def test_a_run_through_the_services_runtime_is_recorded_and_survives_a_second_build(tmp_path: Path) -> None:
    """A run on the built runtime succeeds and is in the database; after aclose() the database is
    free (restore could take it), and a second build on the same file reads the run back."""
    database = tmp_path / "agentkeep.db"
    services = await build_services(_settings(database), _agents())
    try:
        result = await services.runtime.run(RunRequest(message="hi", user_id="ann"))
        assert result["status"] == "succeeded" and result["output"] == "hello"
        assert not _free(database)  # held while the services are open
    finally:
        await services.aclose()
    assert _free(database)

    again = await build_services(_settings(database), _agents())
    try:
        record = await again.store.get_run("ann", result["run_id"])
        assert record is not None and record.output == "hello"
    finally:
        await again.aclose()
    assert _free(database)


async def test_the_hooks_run_in_the_composition_order(tmp_path: Path) -> None:
    """Telemetry outermost (it times everything), the breaker before the budget (an open model is
    refused before pricing), extra hooks inside the budget, the step recorder innermost."""
    extra = Hook()
    services = await build_services(_settings(tmp_path / "agentkeep.db"), _agents(), extra_hooks=[extra])
    try:
        hooks = services.runtime.hooks
        assert [type(hook) for hook in hooks[:3]] == [Telemetry, Resilience, Budget]
        assert hooks[3] is extra and isinstance(hooks[4], StepRecorder) and len(hooks) == 5
        assert hooks[0] is services.telemetry and hooks[4] is services.steps and hooks[2] is services.budget
        assert services.durable.runtime is services.runtime  # one runtime for every entry point
    finally:
        await services.aclose()


async def test_without_telemetry_the_telemetry_hook_is_left_out(tmp_path: Path) -> None:
    services = await build_services(_settings(tmp_path / "agentkeep.db", telemetry=False), _agents())
    try:
        assert [type(hook) for hook in services.runtime.hooks] == [Resilience, Budget, StepRecorder]
    finally:
        await services.aclose()


async def test_a_build_that_fails_after_opening_the_database_closes_it(tmp_path: Path) -> None:
    """A mistake found after the store opened (here the prices file) is the one-line ConfigError,
    and leaves no store open behind it: a Lambda container retries the build on its next invocation."""
    database = tmp_path / "agentkeep.db"
    settings = _settings(database, prices_file=tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="AGENTKEEP_PRICES_FILE"):
        await build_services(settings, _agents())
    assert database.exists()  # the store did open (and migrate) first
    assert _free(database)


async def test_aclose_after_the_durable_engine_started_still_closes_the_database(tmp_path: Path) -> None:
    """DBOS lends the loop its own thread pool and shuts it down with the engine: closing the store
    afterwards must still work, and leave the database free for `agentkeep restore`."""
    database = tmp_path / "agentkeep.db"
    services = await build_services(_settings(database), _agents())
    await services.durable.start()
    assert services.durable.started
    await services.aclose()
    assert _free(database)
