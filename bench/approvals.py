"""Server CPU of an approval round trip, beside a plain run of the same work.

    python bench/approvals.py [--rounds 200] [--port 8766]

Both do 2 model requests and 1 tool call against the zero-latency mock model server (its own
process), on SQLite:

    plain       POST /v1/runs: the model calls `add`, it runs, the model answers
    approval    POST /v1/runs: the model calls `add`, which needs approval, so the run waits
                (its state written, its session kept); POST /v1/runs/{id}/resume approves it:
                the run continues, `add` runs, the model answers

Prints the server's CPU ms (user + system, from /proc/PID/stat) per plain run and per approval round
trip, and the difference: what waiting and resuming add. Runs one request at a time, so the CPU
is each round's own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from _common import HERE, start_server

from agentkeep.testing.mock_llm import MockLLMProcess, Reply

WARMUP = 20


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plain_run(client: httpx.Client) -> None:
    result = client.post("/v1/runs", json={"message": "what is 2+3?", "agent": "plain"}).json()
    assert result["status"] == "succeeded", result


def approval_round_trip(client: httpx.Client) -> None:
    waiting = client.post("/v1/runs", json={"message": "what is 2+3?", "agent": "approve"}).json()
    assert waiting["status"] == "waiting_approval", waiting
    decisions = {"approvals": {call["tool_call_id"]: True for call in waiting["pending"]}}
    result = client.post(f"/v1/runs/{waiting['run_id']}/resume", json=decisions).json()
    assert result["status"] == "succeeded", result
    assert result["tools_used"] == ["add"], result


def measure(pid: int, client: httpx.Client, rounds: int, one: Callable[[httpx.Client], None]) -> tuple[float, float]:
    """(server CPU ms, wall ms) per round, after a warm-up."""
    for _ in range(WARMUP):
        one(client)
    cpu, wall = cpu_s(pid), time.perf_counter()
    for _ in range(rounds):
        one(client)
    return (cpu_s(pid) - cpu) * 1000 / rounds, (time.perf_counter() - wall) * 1000 / rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    with MockLLMProcess() as mock, tempfile.TemporaryDirectory() as workdir:
        mock.control.script(default=Reply.call_then_answer("add", {"a": 2, "b": 3}, "5"), clear=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AGENTKEEP_")},
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "bench",
            "AGENTKEEP_DATABASE_URL": f"sqlite:///{workdir}/bench.db",
            "AGENTKEEP_RATE_LIMIT": "100000000/minute",
            "AGENTKEEP_LOG_LEVEL": "warning",
        }
        cmd = [
            sys.executable,
            "-m",
            "agentkeep",
            "serve",
            str(HERE / "bench_approval_agent.py"),
            "--port",
            str(args.port),
        ]
        proc = start_server(env, workdir, args.port, cmd=cmd)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=30) as client:
                plain_cpu, plain_wall = measure(proc.pid, client, args.rounds, plain_run)
                approval_cpu, approval_wall = measure(proc.pid, client, args.rounds, approval_round_trip)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"rounds: {args.rounds} each, one at a time, SQLite")
    rows = [
        ("plain run (1 request; 2 model requests, 1 tool call)", plain_cpu, plain_wall),
        ("approval round trip (waiting, resume, tool, answer)", approval_cpu, approval_wall),
    ]
    for label, cpu, wall in rows:
        print(f"{label:<55} {cpu:6.2f} ms server CPU  {wall:6.2f} ms wall")
    print(f"{'what waiting and resuming add':<55} {approval_cpu - plain_cpu:6.2f} ms server CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
