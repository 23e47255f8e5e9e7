"""Fixtures for the Lambda tests: the mock model server, and the environment of a function."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentkeep.testing.mock_llm import MockLLM
from tests.support.server import AGENTS_DIR

MOCK_AGENT = str(AGENTS_DIR / "mock_agent.py")


@pytest.fixture(scope="module")
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as mock:
        yield mock


def function_env(mock: MockLLM, database_url: str, target: str = MOCK_AGENT, **extra: str) -> dict[str, str]:
    """What the SAM template sets, pointed at the mock model and the test database."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": "agentkeep-test",
        "AGENTKEEP_TARGET": target,
        "AGENTKEEP_AUTH": "required",
        "AGENTKEEP_DATABASE_URL": database_url,
        "AGENTKEEP_RATE_LIMIT": "100000/minute",
        "AGENTKEEP_READ_RATE_LIMIT": "100000/minute",
        "OPENAI_BASE_URL": mock.base_url,
        "OPENAI_API_KEY": "test-key-not-secret",
        **extra,
    }
