"""Fixtures for the budget tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentkeep.testing.mock_llm import MockLLM
from tests.support.services import fresh_postgres_database


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    """The scripted model server, fresh for each test."""
    with MockLLM() as mock:
        yield mock


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own: budgets count every run in the database."""
    with fresh_postgres_database() as url:
        yield url
