"""Shared fixtures: real databases, real servers, the scripted model server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.s3 import moto_server
from tests.support.services import fresh_postgres_database


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test module."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'agentkeep.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend in turn: the contract suites run against both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'agentkeep.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One S3-compatible server (moto) on loopback for the whole run; each test makes its own bucket."""
    with moto_server() as endpoint:
        yield endpoint


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The workspace tests' tally of attempts to read another scope's files (the goal is 0 leaks)."""
    from tests.support.workspace import CROSS_SCOPE

    if CROSS_SCOPE.attempts:
        terminalreporter.write_line(
            f"cross-scope reads: {CROSS_SCOPE.attempts} attempts, {len(CROSS_SCOPE.leaks)} succeeded"
        )
