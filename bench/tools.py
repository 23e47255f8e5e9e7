"""Safe tools: what the guards cost and what the attack runs count.

    python bench/tools.py [--race 20000] [--sandbox-runs 20]

Prints: run_python's time per call (bubblewrap + limits) against a bare interpreter start;
read_file's time per call with openat2 and with the realpath fallback; escapes under the
directory↔symlink swap race for both; and, when run as root with `unshare`, the SSRF attack
run's refused / fetched counts (tests/tools/netns_ssrf.py, inside a private network namespace).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentkeep.tools import Sandbox, Workspace
from agentkeep.tools._beneath import kernel_has_openat2

REPO = Path(__file__).resolve().parents[1]


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


async def _sandbox(runs: int) -> None:
    sandbox = Sandbox()
    if sandbox.bwrap is None:
        print("run_python: bubblewrap not installed, skipped")
        return
    sandboxed, bare = [], []
    for _ in range(runs):
        started = time.perf_counter()
        await sandbox.run("pass")
        sandboxed.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run([sandbox.python, "-I", "-c", "pass"], check=True)
        bare.append(time.perf_counter() - started)
    overhead = statistics.median(sandboxed) - statistics.median(bare)
    print(
        f"run_python('pass'): {_ms(sandboxed)}; bare interpreter {_ms(bare)}; sandbox overhead {overhead * 1000:.1f} ms"
    )


def _reads(root: Path) -> None:
    modes = [("openat2", True), ("fallback", False)] if kernel_has_openat2() else [("fallback", False)]
    for name, use_openat2 in modes:
        workspace = Workspace(root, use_openat2=use_openat2)
        workspace.write_text("sub/file.txt", "x" * 1000)
        started = time.perf_counter()
        for _ in range(2000):
            workspace.read_text("sub/file.txt")
        print(f"read_file ({name}): {(time.perf_counter() - started) / 2000 * 1e6:.0f} µs per call")


def _races(attempts: int) -> None:
    sys.path.insert(0, str(REPO))  # the race harness lives with its test
    from tests.tools.test_files_race import race

    modes = [("openat2", True), ("fallback", False)] if kernel_has_openat2() else [("fallback", False)]
    for name, use_openat2 in modes:
        with tempfile.TemporaryDirectory() as directory:
            root = Path(directory) / "data"
            counts = race(Workspace(root, use_openat2=use_openat2), root, attempts)
            print(f"swap race ({name}, {attempts} reads): {counts['escaped']} escapes, {counts}")


def _ssrf() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("SSRF attack run: needs root and unshare, skipped")
        return
    run = subprocess.run(
        ["unshare", "--net", "--mount", "--", sys.executable, "-m", "tests.tools.netns_ssrf"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    report = json.loads(run.stdout)
    kinds = [case["kind"] for case in report["cases"].values()]
    internal = [hit for hit in report["hits"] if not hit["address"].startswith(("93.184.216.", "2606:2800:"))]
    print(
        f"SSRF attack run: {kinds.count('refused')} refused, {kinds.count('fetched')} fetched, "
        f"{kinds.count('failed')} failed (the deadline case); requests reaching internal addresses: {len(internal)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--race", type=int, default=20_000)
    parser.add_argument("--sandbox-runs", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(_sandbox(args.sandbox_runs))
    with tempfile.TemporaryDirectory() as directory:
        _reads(Path(directory))
    _races(args.race)
    _ssrf()


if __name__ == "__main__":
    main()
