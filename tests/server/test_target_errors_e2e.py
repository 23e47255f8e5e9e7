"""A TARGET that cannot be served exits 2 with one clear line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import AGENTS_DIR


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("does/not/exist.py", "not found"),
        ("no_such_module_xyz:agent", "no module named"),
        (f"{AGENTS_DIR / 'not_an_agent.py'}:thing", "not a pydantic_ai.Agent"),
        (f"{AGENTS_DIR / 'not_an_agent.py'}:missing", "has no attribute"),
        (f"{AGENTS_DIR / 'not_an_agent.py'}", "defines no pydantic_ai.Agent"),
        (str(AGENTS_DIR / "two_agents.py"), "several agents"),
    ],
)
def test_a_bad_target_exits_2_with_one_line(target: str, needle: str, tmp_path: Path) -> None:
    """Exit status 2 and a single line on stderr that names the problem."""
    env = {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "x"}
    proc = subprocess.run(
        [sys.executable, "-m", "agentkeep", "serve", target, "--port", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in proc.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    """Unknown flags and missing arguments are usage errors."""
    for args in (["serve"], ["serve", "x.py", "--port", "notanumber"], ["frobnicate"]):
        proc = subprocess.run(
            [sys.executable, "-m", "agentkeep", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_a_missing_provider_key_is_a_clear_startup_error(tmp_path: Path) -> None:
    """An OpenAI model without OPENAI_API_KEY fails before binding, with a line that says so."""
    proc = subprocess.run(
        [sys.executable, "-m", "agentkeep", "serve", f"{AGENTS_DIR / 'mock_agent.py'}:assistant", "--port", "1"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "OPENAI_API_KEY" in proc.stderr and "Traceback" not in proc.stderr
