"""End-to-end helpers for the scoped workspaces: a keyed `agentkeep serve` whose scripted model calls
the real file tools, and the tally of cross-scope attempts (the issue's goal: 0 reads across scopes).

Every test that tries to read another scope's file, through a tool, `run_python` or the files
routes, reports it to `CROSS_SCOPE.attempt(...)`, which fails the test on a leak and counts the
attempt; the suite's summary prints the totals (tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.support.cli import make_key
from tests.support.server import AGENTS_DIR, ServerProcess

WORKSPACE_AGENT = str(AGENTS_DIR / "workspace_agent.py")


@dataclass
class CrossScopeTally:
    """Attempts to reach another scope's file, and how many of them got it (must stay 0)."""

    attempts: int = 0
    leaks: list[str] = field(default_factory=list)

    def attempt(self, answer: str, secret: str, how: str) -> None:
        """Record one attempt whose answer was `answer`; a leak fails the calling test."""
        self.attempts += 1
        if secret in answer:
            self.leaks.append(how)
        assert secret not in answer, f"cross-scope read through {how}: {answer[:200]}"


CROSS_SCOPE = CrossScopeTally()


@contextmanager
def open_workspace_dir() -> Iterator[Path]:
    """A workspace directory the sandbox's user can pass through, removed afterwards: under root,
    bwrap (run as `nobody`) resolves the bound folder by its path, and pytest's tmp folders are 0700."""
    path = Path(tempfile.mkdtemp(prefix="agentkeep-ws-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Served:
    """A server requiring keys, its scripted model, and two users' keys and an admin's."""

    server: ServerProcess
    mock: MockLLM
    alice: str
    bob: str
    admin: str
    workspace: Path
    env: dict[str, str]

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def call(self, key: str, session_id: str, tool: str, args: dict[str, Any], **body: Any) -> str:
        """One run in `session_id` whose model calls `tool` once; returns what the tool answered."""
        self.mock.enqueue(Reply.tool_call(tool, args), Reply.text("done"))
        sent = len(self.mock.requests)
        response = self.server.client.post(
            "/v1/runs", json={"message": f"use {tool}", "session_id": session_id, **body}, headers=self.headers(key)
        )
        assert response.status_code in (200, 202), response.text
        if response.status_code == 202:
            self.wait_finished(key, response.json()["run_id"])
        return tool_answer(self.mock.requests[sent:])

    def get(self, path: str, key: str, **params: str) -> httpx.Response:
        return self.server.client.get(path, headers=self.headers(key), params=params)

    def wait_finished(self, key: str, run_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run: dict[str, Any] = self.get(f"/v1/runs/{run_id}", key).json()
            if run["status"] in ("succeeded", "failed", "cancelled", "interrupted"):
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} still unfinished after {timeout}s")


def tool_answer(requests: list[dict[str, Any]]) -> str:
    """The content of the last tool result the model was sent in `requests`."""
    for request in reversed(requests):
        results = [m for m in request.get("messages", []) if m.get("role") == "tool"]
        if results:
            content = results[-1]["content"]
            return content if isinstance(content, str) else json.dumps(content)
    raise AssertionError("the model was never sent a tool result")


@contextmanager
def served(tmp: Path, scope: str, extra_env: dict[str, str] | None = None) -> Iterator[Served]:
    """`agentkeep serve` of the workspace agent with AGENTKEEP_AUTH=required and AGENTKEEP_WORKSPACE_SCOPE=`scope`."""
    url = f"sqlite:///{tmp / 'agentkeep.db'}"
    alice, bob, admin = make_key(url, "alice"), make_key(url, "bob"), make_key(url, "ops", admin=True)
    with open_workspace_dir() as workspace, MockLLM() as mock:
        env = {
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "test-key-not-secret",
            "AGENTKEEP_DATABASE_URL": url,
            "AGENTKEEP_AUTH": "required",
            "AGENTKEEP_RATE_LIMIT": "100000/minute",
            "AGENTKEEP_WORKSPACE_DIR": str(workspace),
            "AGENTKEEP_WORKSPACE_SCOPE": scope,
            **(extra_env or {}),
        }
        with ServerProcess(WORKSPACE_AGENT, tmp, env=env) as server:
            yield Served(server, mock, alice, bob, admin, workspace, env)
