"""Budget stress and overhead: caps must hold exactly, and accounting must stay cheap.

    python bench/budget_stress.py [--runs 1200] [--processes 3] [--database sqlite|postgres|URL]
                                  [--overhead-requests 1000] [--seed 1]

stress     `--runs` randomized runs spread over `--processes` OS processes sharing one database
           (PostgreSQL when reachable, else a SQLite file), each process driving the real runtime
           with the `Budget` hook and 16 concurrent runs. Users, sessions, tool steps, token counts
           and latencies are random; caps apply per run, per session and per user per day. Prints
           the max overshoot of every cap, read back from the ledger (the goal: exactly $0), the
           refusal rate, and whether the ledger, the counters and the runs' cost_usd agree.
overhead   per model request, the time the `Budget` hook adds on SQLite (reserve + settle, with a
           cap set), measured between a stopwatch hook outside it and one inside it; p50 and p99.

The model is Pydantic AI's FunctionModel (no network), so the figures are the budget's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# $2 per million input tokens, $300 per million output tokens; max_tokens 120 → ≤ $0.036 a request.
PRICES = {"stress": {"input": 2, "output": 300}}
CAPS = {"budget_run_usd": 0.08, "budget_session_usd": 0.25, "budget_user_daily_usd": 3.0}
MAX_TOKENS = 120
USERS = 6
SESSIONS_PER_USER = 40
CONCURRENCY = 16
PG_URL = os.environ.get("AGENTKEEP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _settings(database_url: str, prices: Path, **extra: Any) -> Any:
    from agentkeep.config import Settings

    return Settings(
        database_url=database_url,
        prices_file=prices,
        budget_max_tokens=MAX_TOKENS,
        _env_file=None,
        **extra,
    )


def _random_agent(rng: random.Random) -> Any:
    """An agent whose model takes 0-3 tool steps, with random tokens (within max_tokens) and latency."""
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.usage import RequestUsage

    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(rng.uniform(0, 0.02))
        steps = sum(1 for m in messages for p in m.parts if getattr(p, "part_kind", "") == "tool-return")
        usage = RequestUsage(input_tokens=rng.randint(5, 60), output_tokens=rng.randint(1, MAX_TOKENS))
        if steps < rng.choice((0, 0, 1, 1, 2, 3)):
            return ModelResponse(parts=[ToolCallPart("step", {})], usage=usage)
        return ModelResponse(parts=[TextPart("done")], usage=usage)

    agent: Agent[None, str] = Agent(FunctionModel(model, model_name="stress"), name="stress")

    @agent.tool_plain
    def step() -> str:
        """One more step."""
        return "ok"

    return agent


def _stress_worker(args: tuple[str, str, int, int]) -> dict[str, int]:
    database_url, prices, runs, seed = args
    return asyncio.run(_stress_async(database_url, Path(prices), runs, seed))


async def _stress_async(database_url: str, prices: Path, runs: int, seed: int) -> dict[str, int]:
    from agentkeep.budget import budget_from_settings
    from agentkeep.errors import RunFailed, SessionBusy
    from agentkeep.runtime import RunRequest, Runtime
    from agentkeep.stores.sql import SQLStore

    rng = random.Random(seed)
    settings = _settings(database_url, prices, max_concurrent_runs=1000, **CAPS)
    store = SQLStore(database_url, pool_size=CONCURRENCY)
    await store.open()
    runtime = Runtime(
        settings, {"stress": _random_agent(rng)}, store, hooks=[budget_from_settings(settings, store.engine)]
    )
    counts = {"succeeded": 0, "budget_exceeded": 0, "session_busy": 0, "other": 0}
    queue = list(range(runs))

    async def worker() -> None:
        while queue:
            queue.pop()
            user = f"user-{rng.randrange(USERS)}"
            request = RunRequest("go", user_id=user, session_id=f"{user}-s{rng.randrange(SESSIONS_PER_USER)}")
            try:
                await runtime.run(request)
                counts["succeeded"] += 1
            except SessionBusy:
                counts["session_busy"] += 1
            except RunFailed as failed:
                counts["budget_exceeded" if failed.error_type == "budget_exceeded" else "other"] += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    await store.close()
    return counts


def _fresh_postgres() -> str | None:
    parts = urlsplit(PG_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=1):
            pass
        import psycopg
    except (OSError, ImportError):
        return None
    name = f"agentkeep_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def _drop_postgres(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _audit(database_url: str) -> dict[str, float]:
    """Max overshoot per cap, and the consistency checks, read straight from the tables."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    nano = 1e9
    with engine.connect() as conn:

        def one(sql: str) -> float:
            return float(conn.execute(sa.text(sql)).scalar() or 0)

        per = "SELECT MAX(total) FROM (SELECT SUM(cost_nano) AS total FROM agentkeep_ledger GROUP BY {}) t"
        result = {
            "run": one(per.format("run_id")) / nano - CAPS["budget_run_usd"],
            "session": one(per.format("user_id, session_id")) / nano - CAPS["budget_session_usd"],
            "user_daily": one(per.format("user_id, day")) / nano - CAPS["budget_user_daily_usd"],
            "ledger_usd": one("SELECT SUM(cost_nano) FROM agentkeep_ledger") / nano,
            "runs_usd": one("SELECT SUM(cost_usd) FROM agentkeep_runs"),
            "counters_usd": one("SELECT SUM(spent_nano) FROM agentkeep_budget_counters WHERE scope = 'user_day'")
            / nano,
            "held_usd": one("SELECT SUM(held_nano) FROM agentkeep_budget_counters") / nano,
        }
    engine.dispose()
    return result


def stress(runs: int, processes: int, database: str, seed: int, workdir: Path) -> None:
    prices = workdir / "prices.json"
    prices.write_text(json.dumps(PRICES))
    created_pg = None
    if database == "sqlite":
        url = f"sqlite:///{workdir / 'stress.db'}"
    elif database == "postgres":
        created_pg = _fresh_postgres()
        url = created_pg or f"sqlite:///{workdir / 'stress.db'}"
    else:
        url = database
    # Migrate once up front, so the processes start together on a ready schema.
    asyncio.run(_migrate(url))
    share = [runs // processes + (1 if i < runs % processes else 0) for i in range(processes)]
    started = time.perf_counter()
    with ProcessPoolExecutor(processes) as pool:
        results = list(pool.map(_stress_worker, [(url, str(prices), n, seed * 1000 + i) for i, n in enumerate(share)]))
    elapsed = time.perf_counter() - started
    counts = {k: sum(r[k] for r in results) for k in results[0]}
    audit = _audit(url)
    if created_pg:
        _drop_postgres(created_pg)
    total = sum(counts.values())
    overshoot = max(0.0, audit["run"], audit["session"], audit["user_daily"])
    print(f"stress: {total} runs, {processes} processes, {urlsplit(url).scheme} database, {elapsed:.1f} s")
    print(f"  outcomes: {counts}")
    print(f"  refusal rate (budget_exceeded / runs): {counts['budget_exceeded'] / total:.1%}")
    print(
        "  max overshoot: ${:.9f}  (run {:+.6f}, session {:+.6f}, user/day {:+.6f}; negative = headroom)".format(
            overshoot, audit["run"], audit["session"], audit["user_daily"]
        )
    )
    print(
        f"  ledger ${audit['ledger_usd']:.6f}, runs' cost_usd ${audit['runs_usd']:.6f}, "
        f"counters ${audit['counters_usd']:.6f}, still held ${audit['held_usd']:.6f}"
    )
    ok = overshoot == 0 and abs(audit["ledger_usd"] - audit["runs_usd"]) < 1e-6 and audit["held_usd"] == 0
    print(f"  verdict: {'OK' if ok else 'FAILED'}")
    if not ok:
        sys.exit(1)


async def _migrate(url: str) -> None:
    from agentkeep.stores.sql import SQLStore

    store = SQLStore(url)
    await store.open()
    await store.close()


async def overhead(requests: int, workdir: Path) -> None:
    from agentkeep.budget import budget_from_settings
    from agentkeep.hooks import Hook, ModelCall, ModelProceed, RunState
    from agentkeep.runtime import RunRequest, Runtime
    from agentkeep.stores.sql import SQLStore

    class Stopwatch(Hook):
        def __init__(self) -> None:
            self.samples: list[float] = []

        async def wrap_model_request(self, run: RunState, call: ModelCall, proceed: ModelProceed) -> Any:
            start = time.perf_counter()
            response = await proceed()
            self.samples.append(time.perf_counter() - start)
            return response

    prices = workdir / "prices.json"
    prices.write_text(json.dumps(PRICES))
    url = f"sqlite:///{workdir / 'overhead.db'}"
    rng = random.Random(7)
    for label, caps in (("caps set (reserve + settle)", {"budget_user_daily_usd": 1e9}), ("no cap (ledger only)", {})):
        settings = _settings(url, prices, **caps)
        store = SQLStore(url)
        await store.open()
        outer, inner = Stopwatch(), Stopwatch()
        hooks = [outer, budget_from_settings(settings, store.engine), inner]
        runtime = Runtime(settings, {"stress": _quick_agent(rng)}, store, hooks=hooks)
        for i in range(requests + 50):
            await runtime.run(RunRequest("go", user_id="bench", session_id=f"s{i}"))
        await store.close()
        added = sorted((o - n) * 1000 for o, n in zip(outer.samples[50:], inner.samples[50:], strict=True))
        p99 = added[int(len(added) * 0.99) - 1]
        print(f"overhead per model request on SQLite, {label}: p50 {statistics.median(added):.3f} ms, p99 {p99:.3f} ms")


def _quick_agent(rng: random.Random) -> Any:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.usage import RequestUsage

    # Async, like a real provider client: a sync function would run on a thread of its own.
    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        usage = RequestUsage(input_tokens=rng.randint(5, 60), output_tokens=rng.randint(1, MAX_TOKENS))
        return ModelResponse(parts=[TextPart("done")], usage=usage)

    return Agent(FunctionModel(model, model_name="stress"), name="quick")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1200)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--database", default="postgres", help="sqlite, postgres (if reachable) or a URL")
    parser.add_argument("--overhead-requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.runs:
            stress(args.runs, args.processes, args.database, args.seed, Path(tmp))
        if args.overhead_requests:
            asyncio.run(overhead(args.overhead_requests, Path(tmp)))


if __name__ == "__main__":
    main()
