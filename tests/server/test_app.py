"""`create_app` mounts routers on a process's services: another protocol goes next to the API by
passing a router, and an app can serve services its caller built and closes (a Lambda container)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

from agentkeep.config import Settings
from agentkeep.runtime import RunRequest
from agentkeep.server import DEFAULT_ROUTERS, create_app
from agentkeep.server.routes import State
from agentkeep.services import build_services
from agentkeep.stores.backup import DatabaseLock

echo = APIRouter()


@echo.post("/echo/{agent}")
async def run_through_the_runtime(agent: str, state: State) -> dict[str, Any]:
    """A protocol's route: it reaches the same runtime, store and hooks as /v1/runs."""
    return await state.started().runtime.run(RunRequest(message="hi", agent=agent))


def _settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'agentkeep.db'}", auth="off")  # type: ignore[call-arg, arg-type]


def _agents() -> dict[str, Agent[Any, Any]]:
    return {"a": Agent(TestModel(custom_output_text="hello"), name="a")}


def test_a_router_passed_next_to_the_default_ones_is_served_on_the_same_runtime(tmp_path: Path) -> None:
    """The extra route's run is a run like any other: GET /v1/runs/{id} (a default route) finds it."""
    app = create_app(_settings(tmp_path), _agents(), routers=[*DEFAULT_ROUTERS, echo])
    with TestClient(app) as client:
        ran = client.post("/echo/a")
        assert ran.status_code == 200 and ran.json()["output"] == "hello"
        record = client.get(f"/v1/runs/{ran.json()['run_id']}")
        assert record.status_code == 200 and record.json()["status"] == "succeeded"


def test_without_the_default_routers_the_api_is_not_mounted(tmp_path: Path) -> None:
    """`routers` replaces the API; the probes are every process's."""
    with TestClient(create_app(_settings(tmp_path), _agents(), routers=[echo])) as client:
        assert client.post("/v1/runs", json={"message": "hi"}).status_code == 404
        assert client.get("/ready").json() == {"ready": True}
        assert client.post("/echo/a").status_code == 200


async def test_an_app_on_services_built_by_its_caller_leaves_them_open_for_it(tmp_path: Path) -> None:
    """The app's shutdown closes only what is the app's; the caller's services stay usable until it
    closes them, which frees the database."""
    settings = _settings(tmp_path)
    services = await build_services(settings, _agents(), dequeue=False)
    try:
        app = create_app(settings, services.agents, services=services)
        async with app.router.lifespan_context(app):
            assert app.state.agentkeep.started() is services
        result = await services.runtime.run(RunRequest(message="after the app stopped"))
        assert result["status"] == "succeeded"
    finally:
        await services.aclose()
    lock = DatabaseLock(tmp_path / "agentkeep.db")
    assert lock.acquire(exclusive=True)
    lock.release()


def test_a_shared_workspace_behind_api_keys_is_warned_about_once_at_start(tmp_path: Path) -> None:
    """AGENTKEEP_WORKSPACE_SCOPE=shared with keys required logs `workspace.shared`; the default
    scope, or shared without keys, logs nothing about it."""
    import structlog

    def warnings(**overrides: Any) -> list[dict[str, Any]]:
        settings = _settings(tmp_path).model_copy(update=overrides)
        with structlog.testing.capture_logs() as logs:
            create_app(settings, _agents(), auth=overrides.get("auth") == "required")
        return [entry for entry in logs if entry["event"] == "workspace.shared"]

    shared = warnings(workspace_scope="shared", auth="required")
    assert len(shared) == 1 and shared[0]["log_level"] == "warning"
    assert warnings(workspace_scope="session", auth="required") == []
    assert warnings(workspace_scope="shared", auth="off") == []


def test_every_post_route_is_classified_as_a_run_or_not_for_the_rate_limits(tmp_path: Path) -> None:
    """AGENTKEEP_RATE_LIMIT counts the POST routes that start or resume runs, AGENTKEEP_READ_RATE_LIMIT
    everything else: each POST route the app serves is one or the other on purpose, so a new route
    that starts runs cannot slip under the higher read limit unnoticed."""
    from agentkeep.server.guards import starts_run

    not_runs = {"/v1/runs/{run_id}/cancel"}
    app = create_app(_settings(tmp_path), _agents())
    posts = [path for path, operations in app.openapi()["paths"].items() if "post" in operations]
    assert "/v1/runs" in posts and "/v1/tasks/{name}" in posts
    for path in posts:
        concrete = path.replace("{run_id}", "run_1").replace("{name}", "t")
        assert starts_run("POST", concrete) is (path not in not_runs), path
    assert not starts_run("GET", "/v1/runs")
    assert starts_run("POST", "/v1/runs/run_1/resume") and starts_run("POST", "/v1/chat/completions")
