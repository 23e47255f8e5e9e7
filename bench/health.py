"""`/health` latency while the server is busy with runs: the probe must stay in milliseconds.

    python bench/health.py [--seconds 20] [--concurrency 32] [--latency 0.05] [--database-url URL]

A separate process keeps `--concurrency` runs in flight (2 model requests with `--latency` seconds
each, plus 1 tool call) against the mock model server; this process probes `GET /health` every
50 ms over a fresh connection, as a kubelet or load balancer does. Prints the probe's p50/p95/p99/max,
how many probes were not 200, and the runs/s served meanwhile. Goal: p99 ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _common import start_server

from agentkeep.testing.mock_llm import MockLLMProcess, Reply

HERE = Path(__file__).resolve().parent


def load(url: str, concurrency: int, seconds: float, done: multiprocessing.Queue[int]) -> None:
    """Keep `concurrency` runs in flight for `seconds`; report how many finished."""

    async def main() -> int:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        finished = 0
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

            async def worker() -> None:
                nonlocal finished
                while time.monotonic() < deadline:
                    response = await client.post("/v1/runs", json={"message": "what is 2+3?"})
                    finished += response.status_code == 200

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return finished

    done.put(asyncio.run(main()))


def probe(url: str, seconds: float) -> tuple[dict[str, list[float]], int]:
    """Alternate /health and /ready (no database check: the baseline) until `seconds` pass."""
    latencies: dict[str, list[float]] = {"/health": [], "/ready": []}
    failures = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path, measured in latencies.items():
            with httpx.Client(base_url=url, timeout=5) as client:  # a new connection per probe, like a kubelet
                start = time.perf_counter()
                response = client.get(path)
                measured.append(time.perf_counter() - start)
            failures += response.status_code != 200
            time.sleep(0.025)
    return latencies, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per mock model reply")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()

    with MockLLMProcess() as mock, tempfile.TemporaryDirectory() as workdir:
        reply = Reply.call_then_answer("add", {"a": 2, "b": 3}, "5").with_latency(args.latency)
        mock.control.script(default=reply, clear=True)
        env = {
            **os.environ,
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "bench",
            "AGENTKEEP_DATABASE_URL": args.database_url or f"sqlite:///{workdir}/bench.db",
            "AGENTKEEP_LOG_LEVEL": "info",
            "AGENTKEEP_RATE_LIMIT": "1000000/minute",  # measure the server, not the limiter
            "AGENTKEEP_READ_RATE_LIMIT": "1000000/minute",
            "AGENTKEEP_MAX_CONCURRENT_RUNS": str(max(100, args.concurrency * 2)),
        }
        url = f"http://127.0.0.1:{args.port}"
        server = start_server(env, workdir, args.port)
        try:
            idle, _ = probe(url, 2)
            done: multiprocessing.Queue[int] = multiprocessing.Queue()
            loader = multiprocessing.Process(target=load, args=(url, args.concurrency, args.seconds, done))
            loader.start()
            time.sleep(1)  # let the load reach its steady state before measuring
            busy, failures = probe(url, args.seconds - 2)
            runs = done.get(timeout=args.seconds + 120)
            loader.join()
        finally:
            server.terminate()
            server.wait(timeout=60)

    def ms(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000

    def line(label: str, values: list[float]) -> str:
        quantiles = " / ".join(f"{ms(values, q):6.2f}" for q in (50, 95, 99))
        return f"{label:<14} p50/p95/p99 {quantiles} ms, max {max(values) * 1000:6.2f} ms ({len(values)} probes)"

    print(
        f"load: {args.concurrency} runs in flight, {args.latency * 1000:.0f} ms per model reply, {args.seconds:.0f} s"
    )
    print(f"runs served meanwhile: {runs} ({runs / args.seconds:.1f} runs/s); probes not 200: {failures}")
    print(line("/health idle", idle["/health"]))
    print(line("/ready idle", idle["/ready"]))
    print(line("/health busy", busy["/health"]))
    print(line("/ready busy", busy["/ready"]))


if __name__ == "__main__":
    main()
