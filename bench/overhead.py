"""Serving overhead: the same agent run in-process vs through `agentkeep serve` over HTTP.

    python bench/overhead.py [--runs 400] [--concurrency 8]

Each run is 2 model requests + 1 tool call against the zero-latency mock model server (a separate
process, so it does not compete with the measured side for the GIL). Prints runs/s of (a) in-process
`agent.run` and (b) HTTP with a new session per run, the ratio b/a, p50/p99 latency of (b), the
server's idle and peak RSS, and its time from start to `/ready`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from agentkeep.testing.mock_llm import MockLLMProcess, Reply

HERE = Path(__file__).resolve().parent


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def drive(concurrency: int, runs: int, one_run: object) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(runs):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            start = time.perf_counter()
            await one_run()  # type: ignore[operator]
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


async def in_process(runs: int, concurrency: int) -> float:
    sys.path.insert(0, str(HERE))
    from bench_agent import agent

    async def one() -> None:
        await agent.run("what is 2+3?")

    await drive(concurrency, min(20, runs), one)  # warm up connection pools and schemas
    elapsed, _ = await drive(concurrency, runs, one)
    return runs / elapsed


async def over_http(url: str, runs: int, concurrency: int) -> tuple[float, list[float]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one() -> None:
            response = await client.post("/v1/runs", json={"message": "what is 2+3?"})
            response.raise_for_status()

        await drive(concurrency, min(20, runs), one)
        elapsed, latencies = await drive(concurrency, runs, one)
    return runs / elapsed, latencies


def start_server(env: dict[str, str], workdir: str, port: int) -> tuple[subprocess.Popen[bytes], float]:
    cmd = [sys.executable, "-m", "agentkeep", "serve", str(HERE / "bench_agent.py"), "--port", str(port)]
    cmd += os.environ.get("BENCH_SERVE_ARGS", "").split()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc, time.perf_counter() - started
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    with MockLLMProcess() as mock, tempfile.TemporaryDirectory() as workdir:
        mock.control.script(default=Reply.call_then_answer("add", {"a": 2, "b": 3}, "5"), clear=True)
        os.environ.update({"OPENAI_BASE_URL": mock.base_url, "OPENAI_API_KEY": "bench"})
        a = asyncio.run(in_process(args.runs, args.concurrency))

        env = {
            **os.environ,
            "AGENTKEEP_DATABASE_URL": f"sqlite:///{workdir}/bench.db",
            "AGENTKEEP_LOG_LEVEL": "warning",
            "AGENTKEEP_RATE_LIMIT": "1000000/minute",
        }
        proc, ready_s = start_server(env, workdir, args.port)
        try:
            idle = rss_mb(proc.pid)
            b, latencies = asyncio.run(over_http(f"http://127.0.0.1:{args.port}", args.runs, args.concurrency))
            peak = rss_mb(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    quantiles = statistics.quantiles(latencies, n=100)
    print(f"runs={args.runs} concurrency={args.concurrency} (2 model requests + 1 tool call per run)")
    print(f"(a) in-process agent.run      {a:8.1f} runs/s")
    print(f"(b) agentkeep serve over HTTP {b:8.1f} runs/s")
    print(f"ratio b/a                     {b / a:8.2f}")
    print(f"(b) latency p50 / p99         {quantiles[49] * 1000:.1f} ms / {quantiles[98] * 1000:.1f} ms")
    print(f"server RSS idle / peak        {idle:.0f} MB / {peak:.0f} MB")
    print(f"server start → /ready         {ready_s:.2f} s")


if __name__ == "__main__":
    main()
