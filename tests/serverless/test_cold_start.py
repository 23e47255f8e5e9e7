"""What a cold container pays for: importing the handler loads nothing but the standard library, a
sync run loads only what a sync run uses, and the build runs with the garbage collector paused
(`agentkeep.startup.gc_paused`), then frozen.

The figures are bench/cold_start.py's; these tests pin the causes, which a figure on a shared
machine cannot.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from agentkeep.startup import gc_paused
from agentkeep.stores import open_store
from agentkeep.stores.schema import MIGRATIONS, schema_version
from agentkeep.stores.sql import SQLStore
from agentkeep.testing.mock_llm import MockLLM
from tests.serverless.conftest import function_env
from tests.serverless.support import http_event
from tests.support.cli import make_key

# Each with why a sync run on Lambda (PostgreSQL, OpenAI-compatible model, no Redis, no
# collector) has no use for it: loading one of them is a regression of the cold start.
NOT_FOR_A_SYNC_RUN = {
    "dbos": "the durable engine starts for a background run or in worker_handler",
    "agentkeep.durable.checkpoints": "DBOS's side of the durable engine",
    "agentkeep.durable._dbos": "DBOS's side of the durable engine",
    "agentkeep.durable.workflows": "DBOS's side of the durable engine",
    "opentelemetry.sdk": "tracing is configured by AGENTKEEP_OTEL_ENDPOINT only",
    "opentelemetry.exporter": "tracing is configured by AGENTKEEP_OTEL_ENDPOINT only",
    "redis": "limits and breakers use Redis only with AGENTKEEP_REDIS_URL",
    "psycopg": "PostgreSQL is reached through asyncpg",
    "aiosqlite": "SQLite is refused on Lambda",
    "anthropic": "the agent's model is OpenAI's; each provider's SDK loads with its model",
    "xllamacpp": "the built-in local model loads only when an agent uses it",
    "uvicorn": "Lambda's runtime calls the handler; only `agentkeep serve` runs an HTTP server",
}

_CHILD = """
import gc, json, sys
before = set(sys.modules)
from agentkeep.serverless import handler
loaded = {name.split(".")[0] for name in set(sys.modules) - before}
third_party = sorted(loaded - set(sys.stdlib_module_names) - {"agentkeep"})
response = handler(json.loads(sys.argv[1]), None)
from agentkeep.serverless.container import container
print(json.dumps({
    "status": response["statusCode"],
    "third_party_at_import": third_party,
    "modules": sorted(sys.modules),
    "openapi_built": container().app.openapi_schema is not None,
    "gc_enabled": gc.isenabled(),
    "frozen": gc.get_freeze_count(),
}))
"""


@pytest.fixture(scope="module")
def cold_container(mock_llm: MockLLM, postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One fresh interpreter: import the handler, answer one sync run, report what it loaded."""
    key = make_key(postgres_url, "cold")  # here, so the child loads only what the function loads
    event = http_event("function_url", "POST", "/v1/runs", {"message": "hi"}, key=key)
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(event)],
        env={**function_env(mock_llm, postgres_url), "PYTHONPATH": str(root / "src")},
        cwd=tmp_path_factory.mktemp("cold"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 200, report
    return report


def test_importing_the_handler_loads_only_the_standard_library(cold_container: dict[str, object]) -> None:
    """Lambda imports the handler's module in its init phase: the app, pydantic and the drivers
    wait for the first invocation, so a function that is never invoked costs nothing."""
    assert cold_container["third_party_at_import"] == []


def test_a_sync_run_loads_nothing_it_does_not_use(cold_container: dict[str, object]) -> None:
    modules = cold_container["modules"]
    assert isinstance(modules, list)
    assert _loaded("asyncpg", modules) and _loaded("openai", modules)  # what it does use: the list is real
    loaded = {name: why for name, why in NOT_FOR_A_SYNC_RUN.items() if _loaded(name, modules)}
    assert loaded == {}


def test_the_openapi_schema_is_not_built_for_a_run(cold_container: dict[str, object]) -> None:
    """FastAPI builds it on the first GET /openapi.json; a cold start never asks for it."""
    assert cold_container["openapi_built"] is False


def test_the_build_ran_with_the_collector_paused_then_frozen(cold_container: dict[str, object]) -> None:
    """The collector is on again for the invocations, and what the build made is out of its sight."""
    assert cold_container["gc_enabled"] is True
    frozen = cold_container["frozen"]
    assert isinstance(frozen, int) and frozen > 100_000


def _loaded(package: str, modules: list[str]) -> bool:
    return any(m == package or m.startswith(f"{package}.") for m in modules)


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Leave this test process's collector as it found it."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("restored_gc")
def test_gc_paused_pauses_then_freezes_what_the_block_built() -> None:
    gc.enable()
    gc.unfreeze()
    with gc_paused():
        assert not gc.isenabled()
        built = [[i] for i in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)


@pytest.mark.usefixtures("restored_gc")
def test_gc_paused_freezes_nothing_when_the_block_fails() -> None:
    """A failed build is built again on the next invocation: nothing of the failed one is kept."""
    gc.enable()
    gc.unfreeze()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("the build failed")
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("restored_gc")
def test_gc_paused_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine in this process sends while the test runs."""
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    yield sent
    sa.event.remove(sa.Engine, "before_cursor_execute", record)


async def test_a_start_on_a_current_schema_reads_its_version_once(database_url: str, statements: list[str]) -> None:
    """Every start but a deployment's first finds the schema current: one read, no migration lock,
    no table inspection (a cold container's start is one of them)."""
    await (await open_store(database_url)).close()
    statements.clear()
    store = await open_store(database_url)
    await store.close()
    sent = [statement for statement in statements if statement != "BEGIN"]  # SQLite's own, per transaction
    assert len(sent) == 1 and schema_version.name in sent[0], statements


async def test_a_start_on_a_schema_missing_a_migration_still_migrates(database_url: str) -> None:
    first = await open_store(database_url)
    assert isinstance(first, SQLStore)
    async with first.writer() as conn:
        await conn.execute(sa.delete(schema_version).where(schema_version.c.version == len(MIGRATIONS)))
    await first.close()
    again = await open_store(database_url)
    assert isinstance(again, SQLStore)
    try:
        async with again.engine.connect() as conn:
            applied = set((await conn.execute(sa.select(schema_version.c.version))).scalars())
    finally:
        await again.close()
    assert applied == set(range(1, len(MIGRATIONS) + 1))
