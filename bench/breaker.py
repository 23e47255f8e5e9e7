"""How fast a run fails while its model's circuit breaker is open (goal: ≤ 5 ms p99 server-side).

    python bench/breaker.py [--runs 2000] [--concurrency 16] [--redis redis://127.0.0.1:6379/0]

The mock model server (a separate process) answers 503 to everything; one run opens the breaker
(AGENTKEEP_BREAKER_FAILURES=1, a reset of an hour). Then `--runs` synchronous runs are sent one at
a time, and again `--concurrency` at a time, over keep-alive HTTP on loopback. Prints, for each:

    client        the whole HTTP exchange as the client saw it (an upper bound of the server's time)
    server        the server's own span of each refused run: from the request reaching the app to
                  its 503 leaving it (the `Server-Timing: app;dur=` header the benchmark reads)

and checks that no request reached the model while the breaker was open. With `--redis` the
breaker state lives in Redis, as in a fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import BENCH_AGENT, start_server

from agentkeep.testing.mock_llm import MockLLMProcess, Reply

HERE = Path(__file__).resolve().parent
TIMING_APP = HERE / "_timed_app.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def measure(url: str, runs: int, concurrency: int) -> tuple[list[float], list[float]]:
    """Client and server latencies (ms) of `runs` refused runs, `concurrency` at a time."""
    client_ms: list[float] = []
    server_ms: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        remaining = runs

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                response = await client.post("/v1/runs", json={"message": "hi"})
                client_ms.append((time.perf_counter() - start) * 1000)
                if response.status_code != 503 or response.json()["error"]["type"] != "circuit_open":
                    raise SystemExit(f"expected 503 circuit_open, got {response.status_code} {response.text}")
                server_ms.append(float(response.headers["server-timing"].split("dur=")[1]))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return client_ms, server_ms


def summary(label: str, values: list[float]) -> str:
    q = statistics.quantiles(values, n=100)
    return f"{label:<28} p50 {q[49]:6.2f} ms   p99 {q[98]:6.2f} ms   max {max(values):6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis", help="share the breaker through this Redis, as a fleet would")
    args = parser.parse_args()

    with MockLLMProcess() as mock, tempfile.TemporaryDirectory() as workdir:
        mock.control.script(default=Reply.error(503, "provider down"), clear=True)
        env = {
            **os.environ,
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "bench",
            "AGENTKEEP_DATABASE_URL": f"sqlite:///{workdir}/bench.db",
            "AGENTKEEP_LOG_LEVEL": "warning",
            "AGENTKEEP_RATE_LIMIT": "1000000000/minute",
            "AGENTKEEP_READ_RATE_LIMIT": "1000000000/minute",
            "AGENTKEEP_MAX_CONCURRENT_RUNS": "1000",
            "AGENTKEEP_BREAKER_FAILURES": "1",
            "AGENTKEEP_BREAKER_RESET_S": "3600",
        }
        if args.redis:
            env["AGENTKEEP_REDIS_URL"] = args.redis
            env["AGENTKEEP_MODEL"] = f"openai-chat:bench-{os.getpid()}"  # a fresh breaker key
        port = free_port()
        proc = start_server(env, workdir, port, cmd=[sys.executable, str(TIMING_APP), str(BENCH_AGENT), str(port)])
        url = f"http://127.0.0.1:{port}"
        try:
            opened = httpx.post(f"{url}/v1/runs", json={"message": "open it"}, timeout=30)
            print(f"opening run: {opened.status_code} {opened.json()['error']['type']}")
            sent_before = mock.control.stats()["requests"]
            asyncio.run(measure(url, 50, 1))  # warm-up
            sequential = asyncio.run(measure(url, args.runs, 1))
            concurrent = asyncio.run(measure(url, args.runs, args.concurrency))
            leaked = mock.control.stats()["requests"] - sent_before
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    backend = "redis" if args.redis else "memory"
    print(f"breaker open ({backend} backend), {args.runs} runs each; requests that reached the model: {leaked}")
    print(summary("server, one at a time", sequential[1]))
    print(summary("client, one at a time", sequential[0]))
    print(summary(f"server, {args.concurrency} at a time", concurrent[1]))
    print(summary(f"client, {args.concurrency} at a time", concurrent[0]))


if __name__ == "__main__":
    main()
