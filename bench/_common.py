"""What several benchmarks share: starting `agentkeep serve` on the bench agent and waiting for it.

Imported as `_common` by the scripts in this folder (run as `python bench/NAME.py`, which puts
this folder first on `sys.path`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

HERE = Path(__file__).resolve().parent
BENCH_AGENT = HERE / "bench_agent.py"


def start_server(
    env: dict[str, str],
    workdir: str,
    port: int,
    *,
    cmd: list[str] | None = None,
    log: IO[bytes] | None = None,
    ready_s: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Start `agentkeep serve bench_agent.py` (or `cmd`) on `port` and return once `/ready` answers 200.

    Exits the benchmark with one line if the server dies or is not ready within `ready_s`."""
    cmd = cmd or [sys.executable, "-m", "agentkeep", "serve", str(BENCH_AGENT), "--port", str(port)]
    out = log if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT if log else out)
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        time.sleep(0.02)
    proc.terminate()
    raise SystemExit(f"server not ready after {ready_s:.0f} s")
