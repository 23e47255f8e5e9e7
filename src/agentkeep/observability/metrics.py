"""Prometheus metrics: every name in the contract, on one registry served at `/metrics`.

The metric objects are module-level, so any layer above can update them without plumbing:

    from agentkeep.observability import metrics

    metrics.RATE_LIMITED.inc()                                  # a request refused with 429
    metrics.BUDGET_REJECTIONS.labels(scope="session").inc()     # scope: run | session | user_daily
    metrics.CIRCUIT_STATE.labels(model="gpt-4o-mini").set(2)    # 0 closed, 1 half-open, 2 open
    metrics.COST.labels(model="gpt-4o-mini").inc(0.0021)        # USD, once per priced model request

Runs, model requests, tokens and tool calls are counted by the `Telemetry` hook (once per model
request as the run sees it, retries included); the resilience hook adds `outcome="retried"` for
each attempt it retried, and sets breaker states; cost, rejections and overruns are counted by the
budget hook, which prices each request, so each is counted once. Label values must come
from the agent definitions (agent, model and tool names) or from a fixed set (status, outcome,
direction, scope): never from a request. `bounded()` guards that promise for names.
"""

from __future__ import annotations

import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

__all__ = [
    "ACTIVE_RUNS",
    "BUDGET_OVERRUNS",
    "BUDGET_REJECTIONS",
    "CIRCUIT_STATE",
    "CONTENT_TYPE_LATEST",
    "COST",
    "MODEL_LATENCY",
    "MODEL_REQUESTS",
    "RATE_LIMITED",
    "REGISTRY",
    "RUNS",
    "RUN_DURATION",
    "RUN_ITERATIONS",
    "TOKENS",
    "TOOL_CALLS",
    "TOOL_LATENCY",
    "bounded",
    "exposition",
]

# Model requests take tens of milliseconds (a small local model) to minutes (a long generation).
MODEL_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
# A run is one or more model requests plus tools, up to AGENTKEEP_RUN_TIMEOUT_S (300 s by default).
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
# Tools range from a pure function (microseconds) to a fetch or sandboxed code (seconds to minutes).
TOOL_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Model requests per run; AGENTKEEP_MAX_MODEL_REQUESTS is 50 by default.
ITERATION_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)

# `*_created` series double the exposition and no dashboard or rule of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, CPU seconds, open fds
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

RUNS = Counter("agentkeep_runs", "Runs finished, by agent and final status.", ["agent", "status"], registry=REGISTRY)
RUN_DURATION = Histogram(
    "agentkeep_run_duration_seconds", "Wall time of a run.", ["agent"], buckets=RUN_BUCKETS, registry=REGISTRY
)
RUN_ITERATIONS = Histogram(
    "agentkeep_run_iterations", "Model requests per run.", ["agent"], buckets=ITERATION_BUCKETS, registry=REGISTRY
)
MODEL_REQUESTS = Counter(
    "agentkeep_model_requests",
    "Model requests, by model and outcome (ok, error, timeout, rate_limited, cancelled, refused, retried).",
    ["model", "outcome"],
    registry=REGISTRY,
)
MODEL_LATENCY = Histogram(
    "agentkeep_model_request_duration_seconds",
    "Latency of one model request.",
    ["model"],
    buckets=MODEL_BUCKETS,
    registry=REGISTRY,
)
TOKENS = Counter(
    "agentkeep_tokens", "Tokens, by model and direction (input, output).", ["model", "direction"], registry=REGISTRY
)
COST = Counter("agentkeep_cost_usd", "Spend in US dollars, by model.", ["model"], registry=REGISTRY)
TOOL_CALLS = Counter(
    "agentkeep_tool_calls",
    "Tool calls, by tool and outcome (ok, error, retry, deferred, cancelled).",
    ["tool", "outcome"],
    registry=REGISTRY,
)
TOOL_LATENCY = Histogram(
    "agentkeep_tool_call_duration_seconds",
    "Latency of one tool call.",
    ["tool"],
    buckets=TOOL_BUCKETS,
    registry=REGISTRY,
)
ACTIVE_RUNS = Gauge("agentkeep_active_runs", "Runs executing in this process now.", registry=REGISTRY)
CIRCUIT_STATE = Gauge(
    "agentkeep_circuit_state", "Circuit breaker per model: 0 closed, 1 half-open, 2 open.", ["model"], registry=REGISTRY
)
RATE_LIMITED = Counter("agentkeep_rate_limited", "Requests refused by the rate limit (429).", registry=REGISTRY)
BUDGET_REJECTIONS = Counter(
    "agentkeep_budget_rejections",
    "Runs refused or stopped by a budget, by scope (run, session, user_daily).",
    ["scope"],
    registry=REGISTRY,
)
# Beyond the contract: a provider billed more than the budget had reserved for the request.
BUDGET_OVERRUNS = Counter(
    "agentkeep_budget_overruns",
    "Model requests billed above their budget reservation, by scope (run, session, user_daily).",
    ["scope"],
    registry=REGISTRY,
)

MAX_LABEL_VALUES = 200
OTHER = "other"
_seen: dict[str, set[str]] = {}
_seen_lock = threading.Lock()


def bounded(kind: str, value: str) -> str:
    """`value` as a label of `kind` (agent, model, tool), or `other` past `MAX_LABEL_VALUES` names.

    Names come from agent definitions, so the cap is never reached in a sane deployment; it exists
    so that a bug or a model inventing tool names cannot grow the series without end.
    """
    seen = _seen.get(kind)
    if seen is not None and value in seen:
        return value
    with _seen_lock:
        seen = _seen.setdefault(kind, set())
        if value in seen:
            return value
        if len(seen) >= MAX_LABEL_VALUES:
            return OTHER
        seen.add(value)
        return value


def exposition() -> bytes:
    """The registry in Prometheus' text format, for `GET /metrics`."""
    return generate_latest(REGISTRY)
