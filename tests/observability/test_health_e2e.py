"""`/health` tells the truth: a real database check, saturation at the concurrency cap, recovery after."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.support.server import ServerProcess
from tests.support.services import POSTGRES_URL, fresh_postgres_database

AGENT = str(Path(__file__).with_name("telemetry_agent.py"))


def _env(mock: MockLLM, database_url: str, **extra: str) -> dict[str, str]:
    return {"OPENAI_BASE_URL": mock.base_url, "OPENAI_API_KEY": "test", "AGENTKEEP_DATABASE_URL": database_url, **extra}


def _until(server: ServerProcess, check: Callable[[httpx.Response], bool], timeout: float = 20) -> dict[str, Any]:
    """Poll /health until `check` holds for its response; return the body."""
    deadline = time.monotonic() + timeout
    while True:
        response = server.client.get("/health")
        if check(response):
            body: dict[str, Any] = response.json()
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/health never matched; last: {response.status_code} {response.text}")
        time.sleep(0.05)


def _healthy(response: httpx.Response) -> bool:
    return response.status_code == 200


def _degraded(response: httpx.Response) -> bool:
    return response.status_code == 503


def test_health_is_503_while_the_sqlite_file_cannot_be_opened_and_200_once_it_is_back(tmp_path: Path) -> None:
    """The check opens the file anew: a database moved away (unreadable to any new process) is degraded,
    while /live, which checks no dependency, stays 200.

    Moving the file stands in for `chmod 000`, which the suite's root user would read through anyway.
    """
    database = tmp_path / "agentkeep.db"
    with MockLLM() as mock, ServerProcess(AGENT, tmp_path, env=_env(mock, f"sqlite:///{database}")) as server:
        body = _until(server, _healthy)
        assert body["status"] == "healthy" and body["checks"]["database"] == "ok"
        assert {"uptime_s", "active_runs", "version"} <= set(body)
        for _ in range(20):
            assert server.client.get("/health").status_code == server.client.get("/ready").status_code == 200
        assert mock.request_count == 0  # probes never touch the model
        database.rename(tmp_path / "elsewhere.db")
        try:
            body = _until(server, _degraded)
            assert body["status"] == "degraded" and body["checks"]["database"].startswith("failing")
            live = server.client.get("/live")  # a liveness probe: the process answers, whatever the database does
            assert live.status_code == 200 and live.json() == {"live": True}
        finally:
            (tmp_path / "elsewhere.db").rename(database)
        assert _until(server, _healthy)["status"] == "healthy"


def test_health_is_503_while_postgresql_refuses_connections_and_200_once_it_accepts_them(tmp_path: Path) -> None:
    """This test's own database stops taking connections (its sessions are cut): degraded, then healthy."""
    import psycopg

    with fresh_postgres_database() as url, MockLLM() as mock:
        name = url.rsplit("/", 1)[-1]
        with (
            ServerProcess(AGENT, tmp_path, env=_env(mock, url)) as server,
            psycopg.connect(POSTGRES_URL, autocommit=True) as admin,
        ):
            assert _until(server, _healthy)["checks"]["database"] == "ok"
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            try:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                body = _until(server, _degraded)
                assert body["status"] == "degraded" and body["checks"]["database"].startswith("failing")
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert _until(server, _healthy)["status"] == "healthy"


def test_health_is_degraded_while_active_runs_fill_the_concurrency_cap(tmp_path: Path) -> None:
    """With a cap of 1, one slow run saturates the process: 503 `degraded`, capacity saturated, then 200."""
    env_extra = {"AGENTKEEP_MAX_CONCURRENT_RUNS": "1"}
    with (
        MockLLM(default=Reply.text("slow answer").with_latency(3)) as mock,
        ServerProcess(AGENT, tmp_path, env=_env(mock, f"sqlite:///{tmp_path / 'agentkeep.db'}", **env_extra)) as server,
    ):
        assert _until(server, _healthy)["active_runs"] == 0
        results: list[int] = []
        runner = threading.Thread(target=lambda: results.append(server.post_run(message="take your time").status_code))
        runner.start()
        try:
            body = _until(server, _degraded)
            assert body["status"] == "degraded" and body["checks"]["capacity"] == "saturated"
            assert body["active_runs"] == 1
        finally:
            runner.join(30)
        assert results == [200]
        assert _until(server, _healthy)["checks"]["capacity"] == "ok"
