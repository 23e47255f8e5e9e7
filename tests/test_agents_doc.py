"""docs/agents.md's example project runs as written: its files are the doc's code blocks that begin
with `# shop/NAME.py`, and its tests (TestModel, and the mock model server in process and behind a
real `agentkeep serve`) pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"```python\n# shop/([\w]+\.py)\n(.*?)```", re.DOTALL)


def test_the_guides_example_project_passes_its_own_tests(tmp_path: Path) -> None:
    """Every `shop/` file of the guide, written out and tested with pytest in a process of its own."""
    files = _BLOCK.findall((ROOT / "docs" / "agents.md").read_text())
    assert {name for name, _ in files} >= {"agent.py", "triage.py", "test_agent.py", "test_agent_mock.py"}
    shop = tmp_path / "shop"
    shop.mkdir()
    for name, code in files:
        (shop / name).write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKEEP_", "OPENAI_"))}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio"]
    proc = subprocess.run(command, cwd=shop, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout, proc.stdout
