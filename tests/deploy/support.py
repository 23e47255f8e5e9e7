"""Finding the validators, and a rendered project to run them on."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from agentkeep.config import Settings
from agentkeep.deploy import InitReport, init

# The dev extra installs hadolint, shellcheck, cfn-lint and docker-compose into the venv's bin.
_SEARCH_PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def require_tool(name: str, how: str) -> str:
    """The tool's path; skip with a reason when it is absent, fail under CI=true."""
    path = shutil.which(name, path=_SEARCH_PATH)
    if path:
        return path
    message = f"{name} is not installed ({how})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; required under CI=true")
    pytest.skip(message)


def settings(**overrides: object) -> Settings:
    """Settings as a user's environment would give them, independent of this machine's."""
    values: dict[str, object] = {"target": None, "drain_timeout_s": 30.0, "run_timeout_s": 300.0}
    values.update(overrides)
    return Settings(**values)


def init_project(directory: Path, target: str = "all", **overrides: object) -> InitReport:
    """An agent project with `agentkeep init --target TARGET` applied."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "agent.py").write_text("from pydantic_ai import Agent\n\nagent = Agent('test')\n")
    return init(directory, target, settings=settings(**overrides))
