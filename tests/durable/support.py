"""Helpers for the durable-run tests: the environment, polling with a deadline, reading side effects."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentkeep.testing.mock_llm import MockLLM
from tests.support.server import AGENTS_DIR, ServerProcess

DURABLE_AGENT = str(AGENTS_DIR / "durable_agent.py")
MOCK_AGENT = str(AGENTS_DIR / "mock_agent.py")
FINISHED = {"succeeded", "failed", "cancelled", "interrupted"}


def durable_env(mock: MockLLM, database_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """Env for a server or worker on `database_url`, its tools writing under `workdir`."""
    return {
        "OPENAI_BASE_URL": mock.base_url,
        "OPENAI_API_KEY": "test-key-not-secret",
        "AGENTKEEP_DATABASE_URL": database_url,
        "SIDE_EFFECT_FILE": str(workdir / "side.txt"),
        "AGENTKEEP_RATE_LIMIT": "100000/minute",  # the tests poll
        "AGENTKEEP_READ_RATE_LIMIT": "100000/minute",
        **extra,
    }


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def run_status(server: ServerProcess, run_id: str) -> dict[str, Any]:
    response = server.client.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_finished(server: ServerProcess, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """The run's record once it reaches a final status."""
    result: dict[str, Any] = wait_for(
        lambda: (body := run_status(server, run_id))["status"] in FINISHED and body, timeout, f"run {run_id} to finish"
    )
    return result


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def submit(server: ServerProcess, message: str = "go", **body: Any) -> str:
    """POST a background run; check the 202 and its Location; return the run id."""
    response = server.post_run(message=message, background=True, **body)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    assert response.headers["location"] == f"/v1/runs/{run_id}"
    assert response.json()["status"] == "queued"
    return run_id
