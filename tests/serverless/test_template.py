"""`agentkeep init --target lambda`: the SAM template passes cfn-lint and points at these handlers."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import require_tool
from tests.support.cli import run_cli


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bot")
    (directory / "agent.py").write_text("from pydantic_ai import Agent\n\nagent = Agent('test')\n")
    result = run_cli("init", "--target", "lambda", str(directory), cwd=directory)
    assert result.returncode == 0, result.stderr
    return directory


def test_the_sam_template_passes_cfn_lint(project: Path) -> None:
    """cfn-lint, with the SAM transform and its informational checks, finds nothing."""
    tool = require_tool("cfn-lint", "the cfn-lint wheel, in the dev extra")
    result = subprocess.run(
        [tool, "--include-checks", "I", "--", str(project / "template.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_functions_run_the_handlers_agentkeep_serverless_has(project: Path) -> None:
    """The API function and the scheduled worker name `handler` and `worker_handler`, which exist."""
    template = (project / "template.yaml").read_text()
    commands = re.findall(r'Command: \["([\w.]+)"\]', template)
    assert commands == ["agentkeep.serverless.handler", "agentkeep.serverless.worker_handler"]
    assert 'CMD ["agentkeep.serverless.handler"]' in (project / "Dockerfile.lambda").read_text()
    for command in commands:
        module, _, name = command.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))
    assert "Schedule: rate(1 minute)" in template and "AGENTKEEP_TARGET: /var/task/agent.py" in template
