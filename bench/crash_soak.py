"""Crash soak: kill -9 `agentkeep serve` at random moments across background runs of random length.

    python bench/crash_soak.py [--kills 50] [--seed 1]

Runs are submitted one after another; each makes K model requests that call a tool (K random in
1..5) and one that answers, with random model latency. While a run executes the server is killed
with SIGKILL after a random delay, one to three times per run, and restarted on the same address
(the same DBOS executor, which resumes its runs). The model server is stateless: its answer
depends only on the conversation, so a repeated request gets the same answer.

Checked, and printed:
  - every accepted run finishes `succeeded`;
  - no model request is repeated once its step committed: after each kill the run's committed
    model steps C are read from the DBOS database; any later request at a position < C is a failure.
Requests repeated because the kill landed between the answer and its commit are counted (legitimate).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from agentkeep.testing.mock_llm import MockLLM, Reply

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "tests" / "agents" / "durable_agent.py"


class StatelessMock(MockLLM):
    """Answers from the conversation alone: tool call number T while T < K, then the final text."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__(max_logged=100_000)
        self.rng = rng
        self.seen: list[tuple[float, int, int]] = []  # (when, run, position)
        self.guard = threading.Lock()

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        super()._next_reply(body)
        messages = body.get("messages") or []
        user = next(m["content"] for m in messages if m["role"] == "user")
        run, steps = (int(part.split("=")[1]) for part in user.split()[1:3])
        position = sum(1 for m in messages if m["role"] == "tool")
        with self.guard:
            self.seen.append((time.monotonic(), run, position))
            latency = self.rng.uniform(0.02, 0.3)
        if position < steps:
            return Reply.tool_call("append_line", {"text": f"{run}-{position}"}).with_latency(latency)
        return Reply.text(f"done {run}").with_latency(latency)


class Server:
    def __init__(self, workdir: Path, env: dict[str, str], port: int) -> None:
        self.workdir, self.env, self.port = workdir, env, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "agentkeep", "serve", str(AGENT), "--port", str(self.port)]
        log = (self.workdir / "server.log").open("ab")
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise SystemExit("the server did not come back")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def committed_model_steps(system_db: Path, run_id: str) -> int:
    """Model requests of `run_id` whose step committed (0 before DBOS created its database)."""
    try:
        with sqlite3.connect(f"file:{system_db}?mode=ro", uri=True) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM operation_outputs WHERE workflow_uuid = ? AND function_name = 'model_request'"
                " AND error IS NULL",
                (run_id,),
            ).fetchone()
    except sqlite3.OperationalError:  # killed while DBOS was still creating it
        return 0
    return int(count)


def status(server: Server, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{server.url}/v1/runs/{run_id}", timeout=10).json()
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with StatelessMock(rng) as mock, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = {
            **os.environ,
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "soak",
            "AGENTKEEP_DATABASE_URL": f"sqlite:///{workdir}/soak.db",
            "AGENTKEEP_RATE_LIMIT": "100000000/minute",
            "AGENTKEEP_READ_RATE_LIMIT": "100000000/minute",
            "SIDE_EFFECT_FILE": str(workdir / "side.txt"),
            "TOOL_SLEEP_S": "0.05",
        }
        server = Server(workdir, env, args.port)
        server.start()
        kills: list[tuple[float, int, int]] = []  # (when, run, committed model steps then)
        runs: dict[int, tuple[str, int]] = {}
        started = time.monotonic()
        try:
            run = 0
            while len(kills) < args.kills:
                steps = rng.randint(1, 5)
                response = httpx.post(
                    f"{server.url}/v1/runs", json={"message": f"soak run={run} steps={steps}", "background": True}
                )
                response.raise_for_status()
                run_id = response.json()["run_id"]
                runs[run] = (run_id, steps)
                for _ in range(rng.randint(1, 3)):
                    if len(kills) >= args.kills:
                        break
                    time.sleep(rng.uniform(0, 0.35 * (steps + 1)))
                    server.kill()
                    kills.append((time.monotonic(), run, committed_model_steps(workdir / "soak-dbos.db", run_id)))
                    server.start()
                run += 1
            outcomes = {}
            for number, (run_id, _) in runs.items():
                deadline = time.monotonic() + 120
                while (current := status(server, run_id))["status"] in {"queued", "running"}:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                outcomes[number] = current["status"]
        finally:
            server.stop()
        elapsed = time.monotonic() - started

        repeated_after_commit = [
            (when, run, position)
            for kill_at, killed_run, committed in kills
            for when, run, position in mock.seen
            if run == killed_run and when > kill_at and position < committed
        ]
        per_position = Counter((run, position) for _, run, position in mock.seen)
        repeats = sum(count - 1 for count in per_position.values())
        expected = sum(steps + 1 for _, steps in runs.values())
        lines = Counter((workdir / "side.txt").read_text().splitlines()) if (workdir / "side.txt").exists() else {}

    succeeded = sum(1 for s in outcomes.values() if s == "succeeded")
    print(f"kills (SIGKILL)                        {len(kills)} in {elapsed:.0f} s, across {len(runs)} runs")
    print(f"runs succeeded                         {succeeded}/{len(runs)}   {dict(Counter(outcomes.values()))}")
    print(f"model requests                         {len(mock.seen)} for {expected} committed steps")
    print(f"  repeated after their step committed  {len(repeated_after_commit)}   (must be 0)")
    print(f"  repeated, cut before their commit    {repeats}   (the kill landed mid-request)")
    print(f"tool lines written twice (idempotent)  {sum(1 for c in lines.values() if c > 1)}")
    print(json.dumps({"ok": succeeded == len(runs) and not repeated_after_commit}))
    sys.exit(0 if succeeded == len(runs) and not repeated_after_commit else 1)


if __name__ == "__main__":
    main()
