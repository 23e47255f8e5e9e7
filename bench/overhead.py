"""Serving overhead: the same agent run in-process vs through `agentkeep serve` over HTTP.

    python bench/overhead.py [--runs 400] [--concurrency 8] [--client httpx|raw|both]

Each run is 2 model requests + 1 tool call against the zero-latency mock model server (a separate
process, so it does not compete with the measured side for the GIL). Prints runs/s of (a) in-process
`agent.run` and (b) HTTP with a new session per run, the ratio b/a, p50/p99 latency of (b), the
server's idle and peak RSS, and its time from start to `/ready`.

Runs/s move with whatever else shares the cores; CPU time per run barely does, so each side's is
printed too: (a)'s process, and (b)'s server and client. (b) is driven by httpx and by a raw asyncio
HTTP/1.1 keep-alive client, which costs the shared cores about a tenth of httpx's CPU per run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from agentkeep.testing.mock_llm import MockLLMProcess, Reply

HERE = Path(__file__).resolve().parent


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used: its own work, unlike runs/s barely
    affected by whatever else shares the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


async def in_process(runs: int, concurrency: int) -> tuple[float, float]:
    """Runs/s and CPU ms per run of `agent.run` in this process."""
    sys.path.insert(0, str(HERE))
    from bench_agent import agent

    async def one() -> None:
        await agent.run("what is 2+3?")

    await drive(concurrency, min(20, runs), one)  # warm up connection pools and schemas
    cpu = time.process_time()
    elapsed, _ = await drive(concurrency, runs, one)
    return runs / elapsed, (time.process_time() - cpu) * 1000 / runs


@dataclass
class HTTPResult:
    """What run (b) measured."""

    runs_per_s: float
    latencies: list[float]
    server_cpu_ms: float  # the server process's CPU per run
    client_cpu_ms: float  # this process's CPU per run: the client competes for the same cores


async def over_http(url: str, runs: int, concurrency: int, server: int, client: str) -> HTTPResult:
    """Drive `POST /v1/runs` with httpx, or with `raw` HTTP/1.1 keep-alive connections, which cost
    the client a fraction of httpx's CPU and so measure the server more faithfully on shared cores."""
    async with _client(url, concurrency, client) as one:
        await drive(concurrency, min(20, runs), one)
        cpu, own = cpu_s(server), time.process_time()
        elapsed, latencies = await drive(concurrency, runs, one)
        server_ms, client_ms = (cpu_s(server) - cpu) * 1000 / runs, (time.process_time() - own) * 1000 / runs
    return HTTPResult(runs / elapsed, latencies, server_ms, client_ms)


_BODY = json.dumps({"message": "what is 2+3?"}).encode()


@contextlib.asynccontextmanager
async def _client(url: str, concurrency: int, kind: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    if kind == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

            async def one() -> None:
                response = await client.post("/v1/runs", json={"message": "what is 2+3?"})
                response.raise_for_status()

            yield one
        return
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    request = (
        f"POST /v1/runs HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(_BODY)}\r\n\r\n"
    ).encode() + _BODY
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(concurrency):
        idle.put_nowait(await asyncio.open_connection(host, port))

    async def one_raw() -> None:
        reader, writer = await idle.get()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        idle.put_nowait((reader, writer))
        if status != 200:
            raise RuntimeError(f"POST /v1/runs answered {status}")

    try:
        yield one_raw
    finally:
        while not idle.empty():
            idle.get_nowait()[1].close()


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
    parser.add_argument(
        "--client", choices=["httpx", "raw", "both"], default="both", help="what drives (b); `both` runs each"
    )
    args = parser.parse_args()

    with MockLLMProcess() as mock, tempfile.TemporaryDirectory() as workdir:
        mock.control.script(default=Reply.call_then_answer("add", {"a": 2, "b": 3}, "5"), clear=True)
        os.environ.update({"OPENAI_BASE_URL": mock.base_url, "OPENAI_API_KEY": "bench"})
        a, a_cpu = asyncio.run(in_process(args.runs, args.concurrency))

        env = {
            **os.environ,
            "AGENTKEEP_DATABASE_URL": f"sqlite:///{workdir}/bench.db",
            "AGENTKEEP_LOG_LEVEL": "warning",
            "AGENTKEEP_RATE_LIMIT": "1000000/minute",
            "AGENTKEEP_READ_RATE_LIMIT": "1000000/minute",
        }
        proc, ready_s = start_server(env, workdir, args.port)
        try:
            idle = rss_mb(proc.pid)
            clients = ["httpx", "raw"] if args.client == "both" else [args.client]
            url = f"http://127.0.0.1:{args.port}"
            results = {c: asyncio.run(over_http(url, args.runs, args.concurrency, proc.pid, c)) for c in clients}
            peak = rss_mb(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    print(f"runs={args.runs} concurrency={args.concurrency} (2 model requests + 1 tool call per run)")
    print(f"(a) in-process agent.run      {a:8.1f} runs/s   CPU {a_cpu:.1f} ms/run")
    for name, result in results.items():
        quantiles = statistics.quantiles(result.latencies, n=100)
        b = result.runs_per_s
        print(f"(b) serve over HTTP, {name:5s}    {b:8.1f} runs/s   ratio b/a {b / a:.2f}")
        print(f"    latency p50 / p99         {quantiles[49] * 1000:.1f} ms / {quantiles[98] * 1000:.1f} ms")
        print(
            f"    CPU per run: server {result.server_cpu_ms:.1f} ms (a/server {a_cpu / result.server_cpu_ms:.2f}),"
            f" client {result.client_cpu_ms:.1f} ms"
        )
    print(f"server RSS idle / peak        {idle:.0f} MB / {peak:.0f} MB")
    print(f"server start → /ready         {ready_s:.2f} s")


if __name__ == "__main__":
    main()
