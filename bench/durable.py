"""Durable runs: the latency one checkpointed step adds, and background-run throughput.

    python bench/durable.py [--steps 500] [--runs 300] [--concurrency 32] [--no-postgres]

1. Added latency per step: a DBOS workflow of N no-op steps, with agentkeep's own DBOS set-up
   (`agentkeep.durable.setup`: SQLite in WAL mode with synchronous=NORMAL; PostgreSQL in the same
   database). Goal: p50 <= 3 ms on SQLite, <= 5 ms on local PostgreSQL. For scale, the floor: one
   bare committed INSERT on the same kind of database. Each variant runs in a fresh process
   (DBOS is a process singleton).
2. Background-run throughput: `agentkeep serve` with the zero-latency mock model server (its own
   process); runs of 2 model requests + 1 tool call (3 checkpointed steps + the start marker),
   submitted with `background: true` and polled until all finished; the same runs synchronously
   for comparison.

PostgreSQL is AGENTKEEP_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from _common import start_server

from agentkeep.testing.mock_llm import MockLLMProcess, Reply

HERE = Path(__file__).resolve().parent
PG_URL = os.environ.get("AGENTKEEP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _ms(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"p50 {statistics.median(samples) * 1000:6.2f} ms   p99 {q[98] * 1000:6.2f} ms"


# --- 1. per-step latency (child process) ---


def step_latency(database_url: str, steps: int) -> list[float]:
    """In this (fresh) process: N no-op steps of one workflow under agentkeep's DBOS set-up."""
    from dbos import DBOS

    from agentkeep.config import Settings
    from agentkeep.durable.setup import Identity, dbos_config, route_dbos_logs

    async def noop() -> int:
        return 1

    @DBOS.workflow(name="bench.steps")
    async def workflow(n: int) -> list[float]:
        latencies = []
        for _ in range(n):
            started = time.perf_counter()
            await DBOS.run_step_async({"name": "noop"}, noop)
            latencies.append(time.perf_counter() - started)
        return latencies

    async def run() -> list[float]:
        route_dbos_logs()
        settings = Settings(database_url=database_url)
        DBOS(config=dbos_config(settings, Identity("bench", "bench-1")))  # type: ignore[arg-type]
        DBOS.launch()
        try:
            await (await DBOS.start_workflow_async(workflow, 50)).get_result()  # warm up
            result: list[float] = await (await DBOS.start_workflow_async(workflow, steps)).get_result()
            return result
        finally:
            DBOS.destroy()

    return asyncio.run(run())


def floor_latency(database_url: str, n: int) -> list[float]:
    """One committed INSERT, as agentkeep's store configures the database."""
    latencies = []
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, v TEXT)")
        for i in range(n):
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO floor (v) VALUES (?)", (str(i),))
            conn.execute("COMMIT")
            latencies.append(time.perf_counter() - started)
        conn.close()
        return latencies
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS floor (id serial PRIMARY KEY, v text)")
        for i in range(n):
            started = time.perf_counter()
            conn.execute("INSERT INTO floor (v) VALUES (%s)", (str(i),))
            latencies.append(time.perf_counter() - started)
    return latencies


def measure(database_url: str, steps: int) -> dict[str, list[float]]:
    """Both measurements for one database, each in a fresh process."""
    out = {}
    for kind in ("steps", "floor"):
        done = subprocess.run(
            [sys.executable, __file__, f"_{kind}", database_url, str(steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        out[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


# --- 2. background-run throughput ---


async def throughput(url: str, runs: int, concurrency: int, background: bool) -> tuple[float, list[float]]:
    """Runs/s and per-run latency. Background runs are submitted `concurrency` at a time and then
    watched by one poller (polling from every client would load the server more than the runs do);
    their latency is the server's own created → finished."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    run_ids: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one() -> None:
            async with gate:
                started = time.perf_counter()
                body = {"message": "what is 2+3?", "background": background}
                response = await client.post("/v1/runs", json=body)
                response.raise_for_status()
                run_ids.append(response.json()["run_id"])
                if not background:
                    latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(runs)))
        pending = list(run_ids)
        while pending:
            run = (await client.get(f"/v1/runs/{pending[0]}")).json()
            if run["status"] in {"queued", "running"}:
                await asyncio.sleep(0.05)
                continue
            pending.pop(0)
            if background:
                created, finished = (
                    datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("created_at", "finished_at")
                )
                latencies.append((finished - created).total_seconds())
        return runs / (time.perf_counter() - started), latencies


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def scratch_postgres() -> tuple[str, str]:
    import psycopg

    name = f"agentkeep_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, urlunsplit(urlsplit(PG_URL)._replace(path=f"/{name}"))


def drop_postgres(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        print(f"1. added latency of one checkpointed step ({args.steps} no-op steps in one workflow)")
        results = {"SQLite (WAL, synchronous=NORMAL)": measure(f"sqlite:///{workdir}/steps.db", args.steps)}
        if not args.no_postgres:
            name, url = scratch_postgres()
            try:
                results["PostgreSQL (local)"] = measure(url, args.steps)
            finally:
                drop_postgres(name)
        for label, samples in results.items():
            print(f"   {label:34} step  {_ms(samples['steps'])}")
            print(f"   {'':34} floor {_ms(samples['floor'])}   (one bare committed INSERT)")

        print(f"2. background runs: {args.runs} runs, {args.concurrency} at a time, 2 model requests + 1 tool each")
        with MockLLMProcess() as mock:
            mock.control.script(default=Reply.call_then_answer("add", {"a": 2, "b": 3}, "5"), clear=True)
            env = {
                **os.environ,
                "OPENAI_BASE_URL": mock.base_url,
                "OPENAI_API_KEY": "bench",
                "AGENTKEEP_DATABASE_URL": f"sqlite:///{workdir}/bench.db",
                "AGENTKEEP_LOG_LEVEL": "warning",
                "AGENTKEEP_RATE_LIMIT": "100000000/minute",
                "AGENTKEEP_READ_RATE_LIMIT": "100000000/minute",
                "AGENTKEEP_USER_CONCURRENCY": str(args.concurrency),
            }
            proc = start_server(env, workdir, args.port)
            try:
                url = f"http://127.0.0.1:{args.port}"
                asyncio.run(throughput(url, 20, 8, background=True))  # warm up: engine, queue, schemas
                bg, bg_latencies = asyncio.run(throughput(url, args.runs, args.concurrency, background=True))
                sync, sync_latencies = asyncio.run(throughput(url, args.runs, args.concurrency, background=False))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        print(f"   background (durable)  {bg:7.1f} runs/s   created → finished {_ms(bg_latencies)}")
        print(f"   synchronous           {sync:7.1f} runs/s   request → answer  {_ms(sync_latencies)}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] in {"_steps", "_floor"}:
        fn = step_latency if sys.argv[1] == "_steps" else floor_latency
        print(json.dumps(fn(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
