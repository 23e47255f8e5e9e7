"""Lambda cold start and warm invocation cost of `agentkeep.serverless.handler`.

    python bench/cold_start.py [--cold 12] [--warm 200]

Needs PostgreSQL (AGENTKEEP_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres):
a throwaway database is created and dropped. The model is the mock server, in its own process.

cold   a fresh interpreter imports the handler and answers one sync run (2 model requests, 1 tool
       call) from a function URL event: wall time from spawning the process to the answer, the
       median of --cold containers; beside it the same measure for an interpreter that only
       imports pydantic_ai, for one that imports nothing, and for one that answers the same run
       with Pydantic AI alone (the agent file, `run_sync`: the model's SDK and the first run's
       own costs, which any app on this model pays, without agentkeep). The first invocation is split into
       its stages (each imported or built ahead of the handler, in the order it does them). The
       database is migrated before, as it is for every cold start but a deployment's first.
warm   the same run, --warm times in one warm container (handler called in-process, as Lambda's
       runtime does), against the same run through `agentkeep serve` over loopback HTTP with
       keep-alive: medians, and their difference.

Lambda's own runtime API hop and its init-phase CPU boost are not part of either figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from agentkeep.testing.mock_llm import MockLLMProcess, Reply

HERE = Path(__file__).resolve().parent
AGENT = str(HERE / "bench_agent.py")
POSTGRES_URL = os.environ.get("AGENTKEEP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MARK = "BENCH "

_HANDLER_CHILD = """
import json, os, sys, time
t0 = time.perf_counter()
from agentkeep.serverless import handler
imported = time.perf_counter()
event = json.loads(sys.argv[1])
if sys.argv[2] == "0":  # the cold runs: split the first invocation into what it does, in its order,
    from agentkeep.startup import gc_paused  # with the collector paused around all of it, as the build has
    with gc_paused():
        import pydantic_ai
        framework = time.perf_counter()
        import agentkeep.server, agentkeep.serverless.container as box
        app_code = time.perf_counter()
        from pydantic_ai.models.openai import OpenAIChatModel
        import openai.resources.chat
        model_sdk = time.perf_counter()
        box.container()
        built = time.perf_counter()
else:
    framework = app_code = model_sdk = built = imported
response = handler(event, None)
answered = time.perf_counter()
assert response["statusCode"] == 200, response
stages = {"import_s": imported - t0, "pydantic_ai_s": framework - imported, "app_code_s": app_code - framework,
          "model_sdk_s": model_sdk - app_code, "container_s": built - model_sdk, "run_s": answered - built,
          "first_run_s": answered - imported}
print("BENCH " + json.dumps(stages), flush=True)
warm = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    assert handler(event, None)["statusCode"] == 200
    warm.append(time.perf_counter() - started)
print("BENCH " + json.dumps({"warm": warm}), flush=True)
os._exit(0)
"""
_IMPORT_CHILD = "import {module}\nprint('BENCH {{}}', flush=True)\nimport os; os._exit(0)"
# The same agent and run with Pydantic AI alone: what a bare app on this model pays to answer.
_BARE_CHILD = """
import os, runpy
agent = runpy.run_path(os.environ["AGENTKEEP_TARGET"])["agent"]
assert agent.run_sync("what is 2+3?").output
print("BENCH {}", flush=True)
os._exit(0)
"""
_NOTHING_CHILD = "print('BENCH {}', flush=True)\nimport os; os._exit(0)"


@contextmanager
def fresh_database() -> Iterator[str]:
    import psycopg

    name = f"agentkeep_bench_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_key(url: str) -> str:
    """Migrate the database and make an API key, as `agentkeep keys create` does."""
    from agentkeep.stores.keys import open_key_store

    async def create() -> str:
        async with open_key_store(url) as keys:
            return (await keys.create("bench")).token

    return asyncio.run(create())


def function_url_event(key: str) -> dict[str, object]:
    """A function URL event (payload 2.0) carrying one sync run."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/v1/runs",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "authorization": f"Bearer {key}", "host": "bench.on.aws"},
        "requestContext": {
            "domainName": "bench.lambda-url.us-east-1.on.aws",
            "http": {"method": "POST", "path": "/v1/runs", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1"},
            "routeKey": "$default",
            "stage": "$default",
        },
        "body": json.dumps({"message": "what is 2+3?"}),
        "isBase64Encoded": False,
    }


def spawn(code: str, env: dict[str, str], *args: str) -> tuple[float, list[dict[str, object]]]:
    """Run `code` in a fresh interpreter: seconds until its first BENCH line, and every BENCH line."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first: float | None = None
    reports: list[dict[str, object]] = []
    for line in proc.stdout:
        if line.startswith(MARK):
            first = first if first is not None else time.perf_counter() - started
            reports.append(json.loads(line.removeprefix(MARK)))
    if proc.wait() != 0 or first is None:
        raise SystemExit(f"the child failed (exit {proc.returncode})")
    return first, reports


def serve_latencies(env: dict[str, str], key: str, runs: int, workdir: str) -> list[float]:
    """The same run through `agentkeep serve`: sequential requests over one keep-alive connection."""
    port = 8771
    cmd = [sys.executable, "-m", "agentkeep", "serve", AGENT, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("agentkeep serve did not become ready")
                time.sleep(0.05)
            headers = {"authorization": f"Bearer {key}"}
            latencies = []
            for i in range(runs + 20):  # the first 20 warm the pools, as the warm container's were
                started = time.perf_counter()
                response = client.post("/v1/runs", json={"message": "what is 2+3?"}, headers=headers)
                response.raise_for_status()
                if i >= 20:
                    latencies.append(time.perf_counter() - started)
            return latencies
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=12, help="containers to start (median of these)")
    parser.add_argument("--warm", type=int, default=200, help="warm invocations, and as many requests to serve")
    args = parser.parse_args()

    with MockLLMProcess() as mock, fresh_database() as url, tempfile.TemporaryDirectory() as workdir:
        mock.control.script(default=Reply.call_then_answer("add", {"a": 2, "b": 3}, "5"), clear=True)
        key = make_key(url)
        base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKEEP_")}
        env = {
            **base,
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "bench",
            "AGENTKEEP_TARGET": AGENT,
            "AGENTKEEP_DATABASE_URL": url,
            "AGENTKEEP_AUTH": "required",
            "AGENTKEEP_LOG_LEVEL": "warning",
            "AGENTKEEP_RATE_LIMIT": "1000000/minute",
            "AGENTKEEP_READ_RATE_LIMIT": "1000000/minute",
            "AWS_LAMBDA_FUNCTION_NAME": "bench",
        }
        event = json.dumps(function_url_event(key))
        nothing = [spawn(_NOTHING_CHILD, base)[0] for _ in range(args.cold)]
        pydantic_ai = [spawn(_IMPORT_CHILD.format(module="pydantic_ai"), base)[0] for _ in range(args.cold)]
        bare = [spawn(_BARE_CHILD, env)[0] for _ in range(args.cold)]
        cold: list[float] = []
        stages: dict[str, list[float]] = {}
        for _ in range(args.cold):
            wall, reports = spawn(_HANDLER_CHILD, env, event, "0")
            cold.append(wall)
            for stage, seconds in reports[0].items():
                stages.setdefault(stage, []).append(float(seconds))  # type: ignore[arg-type]
        _, reports = spawn(_HANDLER_CHILD, env, event, str(args.warm + 20))
        warm = [float(t) for t in reports[1]["warm"][20:]]  # type: ignore[index]
        served = serve_latencies(env, key, args.warm, workdir)

    ms = 1000
    med = statistics.median
    print(f"cold start, median of {args.cold} fresh interpreters (spawn → answer):")
    print(f"  interpreter alone                 {med(nothing) * ms:7.0f} ms")
    print(f"  import pydantic_ai                {med(pydantic_ai) * ms:7.0f} ms")
    print(f"  handler: first sync run answered  {med(cold) * ms:7.0f} ms   (target ≤ 1300 ms)")
    print(f"    import agentkeep.serverless     {med(stages['import_s']) * ms:7.0f} ms")
    print(f"    first invocation                {med(stages['first_run_s']) * ms:7.0f} ms, of which")
    print(f"      pydantic_ai                   {med(stages['pydantic_ai_s']) * ms:7.0f} ms")
    print(f"      the app's code (FastAPI, SQLAlchemy, agentkeep) {med(stages['app_code_s']) * ms:5.0f} ms")
    print(f"      the model's SDK (openai)      {med(stages['model_sdk_s']) * ms:7.0f} ms")
    print(f"      the container (agent, app, database pool, migrations check) {med(stages['container_s']) * ms:.0f} ms")
    print(f"      the run itself                {med(stages['run_s']) * ms:7.0f} ms")
    print(f"  above pydantic_ai's import        {(med(cold) - med(pydantic_ai)) * ms:7.0f} ms   (target ≤ 300 ms)")
    print(f"  pydantic_ai alone: the same agent, one run_sync  {med(bare) * ms:5.0f} ms")
    print(f"  handler above that                {(med(cold) - med(bare)) * ms:7.0f} ms")
    print(f"warm, median of {args.warm} sequential runs (2 model requests + 1 tool call each):")
    print(f"  Lambda handler, in-process        {med(warm) * ms:7.2f} ms")
    print(f"  agentkeep serve, loopback HTTP    {med(served) * ms:7.2f} ms")
    print(f"  handler - serve                   {(med(warm) - med(served)) * ms:+7.2f} ms   (target ≤ +5 ms)")


if __name__ == "__main__":
    main()
