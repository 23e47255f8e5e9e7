"""One writer per session, also across two server processes sharing one database."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import ServerProcess


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_second_run_on_a_busy_session_gets_409_across_processes(
    backend: str, mock_llm: MockLLM, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """While a slow run holds the session on server A, server B answers 409 at once; no interleaving."""
    url = f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    mock_llm.set_default(Reply.text("slow answer").with_latency(2.0))
    env = server_env(mock_llm, url)
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as a, ServerProcess(MOCK_AGENT, tmp_path, env=env) as b:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(a.post_run, message="long job", session_id=f"busy-{backend}")
            # wait until the slow run has reached the model, so it surely holds the session
            deadline_hit = _wait_for(lambda: mock_llm.request_count >= 1)
            assert deadline_hit
            refused = [b.post_run(message=f"intruder {i}", session_id=f"busy-{backend}") for i in range(3)]
            refused_local = a.post_run(message="intruder local", session_id=f"busy-{backend}")
            assert slow.result(timeout=30).status_code == 200
        for response in [*refused, refused_local]:
            assert response.status_code == 409
            assert response.json()["error"]["type"] == "session_busy"
        history = b.client.get(f"/v1/sessions/busy-{backend}").json()["messages"]
        assert [m["content"] for m in history] == ["long job", "slow answer"]
        mock_llm.set_default(Reply.text("fast"))
        assert b.post_run(message="after", session_id=f"busy-{backend}").status_code == 200


def _wait_for(condition: object, timeout: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return False
