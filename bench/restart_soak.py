"""Restarts under load: SIGTERM `agentkeep serve` while runs are in flight, N times over (goal: 0 failed).

    python bench/restart_soak.py [--restarts 10] [--clients 50] [--load-s 2.5]

Each cycle starts the server (one SQLite database for all cycles, as a deploy would keep it),
has `--clients` clients loop over runs (alternately synchronous and streamed; the mock model
answers in 1-2 s), sends SIGTERM once the load is steady, and keeps counting until every client
has seen the server refuse or go away. A request is *in flight* when it was sent before the
signal; it *failed* unless it completed (200 with a RunResult, or a stream ending in
`run.completed`) or was cleanly refused with 503 `draining` before it started. Prints one line
per cycle and the totals; the process must exit 0 each time, before the drain timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import start_server

from agentkeep.testing.mock_llm import MockLLMProcess, Reply

HERE = Path(__file__).resolve().parent
DRAIN_TIMEOUT_S = 30


@dataclass
class Cycle:
    in_flight: int = 0  # sent before the signal
    completed: int = 0  # of those, finished with 200
    refused: int = 0  # of those, 503 draining before they started
    failed: list[str] = field(default_factory=list)  # of those, anything else
    after_signal: int = 0  # sent after the signal (refused or connection closed: both fine)
    exit_code: int | None = None
    drain_s: float = 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def one_run(client: httpx.AsyncClient, stream: bool) -> tuple[int, bool, str]:
    """(status, completed, error type or '') of one run."""
    body = {"message": "what is 2+3?", "stream": stream}
    if not stream:
        response = await client.post("/v1/runs", json=body)
        data = response.json()
        return response.status_code, data.get("status") == "succeeded", data.get("error", {}).get("type", "")
    async with client.stream("POST", "/v1/runs", json=body) as response:
        text = "".join([chunk async for chunk in response.aiter_text()])
    if response.status_code != 200:
        return response.status_code, False, json.loads(text)["error"]["type"]
    return 200, "event: run.completed" in text, "" if "event: run.completed" in text else "stream without completion"


async def load_and_stop(proc: subprocess.Popen[bytes], url: str, clients: int, load_s: float) -> Cycle:
    cycle = Cycle()
    signalled_at: list[float] = []

    async def client_loop(client: httpx.AsyncClient, index: int) -> None:
        stream = index % 2 == 1
        while True:
            sent_before_signal = not signalled_at
            try:
                status, completed, error = await one_run(client, stream)
            except httpx.HTTPError as exc:
                if sent_before_signal:
                    cycle.in_flight += 1
                    cycle.failed.append(f"{type(exc).__name__}: {exc}")
                else:
                    cycle.after_signal += 1
                return
            if not sent_before_signal:
                cycle.after_signal += 1
                if status == 503:
                    return
                continue
            cycle.in_flight += 1
            if status == 200 and completed:
                cycle.completed += 1
            elif status == 503 and error == "draining":
                cycle.refused += 1
                return
            else:
                cycle.failed.append(f"{status} {error}")

    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(base_url=url, timeout=DRAIN_TIMEOUT_S + 30, limits=limits) as client:
        tasks = [asyncio.create_task(client_loop(client, i)) for i in range(clients)]
        await asyncio.sleep(load_s)
        signalled_at.append(time.monotonic())
        proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
    cycle.exit_code = await asyncio.to_thread(proc.wait, DRAIN_TIMEOUT_S + 30)
    cycle.drain_s = time.monotonic() - signalled_at[0]
    return cycle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--load-s", type=float, default=2.5, help="load before each SIGTERM")
    args = parser.parse_args()

    replies = [Reply.text("5", chunks=3).with_latency(1 + random.random()) for _ in range(20_000)]
    with MockLLMProcess() as mock, tempfile.TemporaryDirectory() as workdir:
        mock.control.script(*replies, default=Reply.text("5").with_latency(1.5), clear=True)
        env = {
            **os.environ,
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "bench",
            "AGENTKEEP_DATABASE_URL": f"sqlite:///{workdir}/soak.db",
            "AGENTKEEP_LOG_LEVEL": "warning",
            "AGENTKEEP_RATE_LIMIT": "1000000/minute",
            "AGENTKEEP_READ_RATE_LIMIT": "1000000/minute",
            "AGENTKEEP_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
        }
        totals = Cycle()
        bad_exits = 0
        for n in range(1, args.restarts + 1):
            port = free_port()
            with Path(workdir, f"server-{port}.log").open("ab") as log:
                proc = start_server(env, workdir, port, log=log)
            cycle = asyncio.run(load_and_stop(proc, f"http://127.0.0.1:{port}", args.clients, args.load_s))
            bad_exits += cycle.exit_code != 0 or cycle.drain_s >= DRAIN_TIMEOUT_S
            print(
                f"restart {n:2}: in flight {cycle.in_flight:3}  completed {cycle.completed:3}  "
                f"refused(draining) {cycle.refused:3}  failed {len(cycle.failed):2}  "
                f"after signal {cycle.after_signal:3}  exit {cycle.exit_code}  signal→exit {cycle.drain_s:5.2f} s"
            )
            for failure in cycle.failed[:5]:
                print(f"    failed: {failure}")
            totals.in_flight += cycle.in_flight
            totals.completed += cycle.completed
            totals.refused += cycle.refused
            totals.failed += cycle.failed
    print(
        f"total over {args.restarts} restarts: {totals.in_flight} in flight, {totals.completed} completed, "
        f"{totals.refused} refused (draining), FAILED IN-FLIGHT REQUESTS: {len(totals.failed)}, "
        f"bad exits: {bad_exits}"
    )


if __name__ == "__main__":
    main()
