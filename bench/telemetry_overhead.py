"""What logs and metrics cost: `agentkeep serve` throughput with the Telemetry hook on and off.

    python bench/telemetry_overhead.py [--runs 400] [--concurrency 8] [--rounds 3]

Same set-up as bench/overhead.py (2 model requests + 1 tool call per run, zero-latency mock model
in its own process, a new session per run), at AGENTKEEP_LOG_LEVEL=info with the log stream going
to /dev/null. Each round starts one server with AGENTKEEP_TELEMETRY=off and one with it on, in
alternation so drift on a shared machine hits both; prints runs/s and the server's CPU time per run
for each round, the medians, and the cost of telemetry as a share of throughput (goal: ≤ 5%). On a
busy machine runs/s swings with the neighbours; CPU per run, which bounds the throughput of a
saturated server, is steadier. Last, the hook alone: the CPU time of its five calls per run (start,
two model requests, one tool call, end; logs rendered to /dev/null), as a share of the CPU time the
server spent per run without it. That share is the figure that holds on a machine shared with
other work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import over_http, start_server  # a sibling script, not a package
from pydantic_ai.messages import ModelResponse, TextPart
from pydantic_ai.models.function import FunctionModel
from pydantic_ai.usage import RequestUsage

from agentkeep.config import Settings
from agentkeep.hooks import ModelCall, RunOutcome, RunState, ToolCall
from agentkeep.observability import Telemetry, configure_logging
from agentkeep.testing.mock_llm import MockLLMProcess, Reply


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hook_cost_ms(runs: int = 3000) -> float:
    """CPU milliseconds the Telemetry hook spends on one run, logs at info rendered to /dev/null."""
    settings = Settings(_env_file=None, log_level="info")  # type: ignore[call-arg]
    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 — kept open for the loggers
    try:
        configure_logging(settings)
    finally:
        sys.stdout = stdout
    telemetry = Telemetry(settings)
    response = ModelResponse(parts=[TextPart("5")], usage=RequestUsage(input_tokens=60, output_tokens=8))
    call = ModelCall(model=FunctionModel(lambda *_: response, model_name="bench"), messages=[], context=None)  # type: ignore[arg-type]
    tool = ToolCall(name="add", args={"a": 2, "b": 3}, call_id="call_1", step=1)

    async def model() -> ModelResponse:
        return response

    async def add() -> int:
        return 5

    async def loop() -> float:
        best = float("inf")
        for _ in range(5):  # the best of five: the least disturbed by the neighbours
            start = time.process_time()
            for i in range(runs // 5):
                run = RunState(f"run_{i:024x}", "ses_0123456789abcdef01234567", "anonymous", "bench")
                await telemetry.before_run(run)
                await telemetry.wrap_model_request(run, call, model)
                await telemetry.wrap_tool_call(run, tool, add)
                await telemetry.wrap_model_request(run, call, model)
                await telemetry.after_run(run, RunOutcome("succeeded"))
            best = min(best, (time.process_time() - start) / (runs // 5) * 1000)
        return best

    return asyncio.run(loop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()

    results: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    with MockLLMProcess() as mock:
        mock.control.script(default=Reply.call_then_answer("add", {"a": 2, "b": 3}, "5"), clear=True)
        for round_ in range(args.rounds):
            for mode in ("off", "on"):
                with tempfile.TemporaryDirectory() as workdir:
                    env = {
                        **os.environ,
                        "OPENAI_BASE_URL": mock.base_url,
                        "OPENAI_API_KEY": "bench",
                        "AGENTKEEP_DATABASE_URL": f"sqlite:///{workdir}/bench.db",
                        "AGENTKEEP_LOG_LEVEL": "info",
                        "AGENTKEEP_TELEMETRY": mode,
                        "AGENTKEEP_RATE_LIMIT": "1000000/minute",  # measure the server, not the limiter
                        "AGENTKEEP_READ_RATE_LIMIT": "1000000/minute",
                    }
                    proc, _ = start_server(env, workdir, args.port)
                    try:
                        before = cpu_seconds(proc.pid)
                        rate, _ = asyncio.run(over_http(f"http://127.0.0.1:{args.port}", args.runs, args.concurrency))
                        # over_http also runs min(20, runs) warm-up runs before the measured ones
                        per_run = (cpu_seconds(proc.pid) - before) / (args.runs + min(20, args.runs)) * 1000
                    finally:
                        proc.terminate()
                        proc.wait(timeout=60)
                results[mode].append(rate)
                cpu[mode].append(per_run)
                print(
                    f"round {round_ + 1} telemetry {mode:<3} {rate:8.1f} runs/s {per_run:7.2f} ms CPU/run", flush=True
                )

    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    print(f"runs={args.runs} concurrency={args.concurrency} rounds={args.rounds}, log level info")
    print(f"median without telemetry {off:8.1f} runs/s {cpu_off:7.2f} ms CPU/run")
    print(f"median with telemetry    {on:8.1f} runs/s {cpu_on:7.2f} ms CPU/run")
    cost_rate, cost_cpu = (1 - on / off) * 100, (cpu_on / cpu_off - 1) * 100
    print(f"cost of logs + metrics   {cost_rate:8.1f} % of runs/s, {cost_cpu:.1f} % CPU/run")
    hook = hook_cost_ms()
    print(
        f"hook alone               {hook * 1000:8.0f} µs CPU/run = {hook / cpu_off * 100:.1f} % of a run's server CPU"
    )


if __name__ == "__main__":
    main()
