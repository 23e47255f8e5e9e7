"""Fixtures for end-to-end tests of `agentkeep serve`: the mock model server and a server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM
from tests.support.server import AGENTS_DIR, ServerProcess

MOCK_AGENT = str(AGENTS_DIR / "mock_agent.py")


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def server_env(mock: MockLLM, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": mock.base_url,
        "OPENAI_API_KEY": "test-key-not-secret",
        "AGENTKEEP_DATABASE_URL": database_url,
        **extra,
    }


@pytest.fixture
def server(mock_llm: MockLLM, tmp_path: Path) -> Iterator[ServerProcess]:
    env = server_env(mock_llm, f"sqlite:///{tmp_path / 'agentkeep.db'}", TOOL_LOG=str(tmp_path / "tools.log"))
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as proc:
        yield proc
