"""Fixtures for the observability tests: logging configured for one test, then put back."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from agentkeep.config import Settings
from agentkeep.observability import configure_logging

LogLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., LogLines]]:
    """`json_logs(**settings)` configures logging to a buffer and returns a reader of its JSON lines."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()

    def configure(**settings: Any) -> LogLines:
        monkeypatch.setattr("sys.stdout", buffer)
        configure_logging(Settings(_env_file=None, **settings))  # type: ignore[call-arg]

        def lines() -> list[dict[str, Any]]:
            return [json.loads(line) for line in buffer.getvalue().splitlines() if line]

        return lines

    yield configure
    root.handlers[:], root.level = saved[0], saved[1]
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
