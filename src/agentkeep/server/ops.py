"""Operator routes: `GET /metrics` (Prometheus text) and `GET /v1/stats` (the JSON snapshot).

The snapshot adds what a console shows beside it: each circuit breaker this process has met (the
models the breaker itself remembers, each asked for its state now), version and uptime.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from agentkeep import __version__
from agentkeep.observability import metrics
from agentkeep.resilience import CircuitState
from agentkeep.server.routes import State, User
from agentkeep.server.state import AppState

__all__ = ["BreakerState", "StatsOut", "router"]

router = APIRouter()
BreakerState = Literal["closed", "half_open", "open"]
_STATE_NAMES: dict[CircuitState, BreakerState] = {
    CircuitState.CLOSED: "closed",
    CircuitState.HALF_OPEN: "half_open",
    CircuitState.OPEN: "open",
}


class StatsOut(BaseModel):
    """Totals since the process started; rates and averages over its last 1,000 runs."""

    total_requests: int = Field(description="Runs finished by this process.")
    total_tool_calls: int
    total_errors: int = Field(description="Runs that ended failed or interrupted.")
    total_tokens: int
    error_rate: float = Field(description="Share of the last 1,000 runs that were errors, 0 to 1.")
    avg_response_ms: float
    p95_response_ms: float
    avg_tokens_per_request: float
    avg_iterations_per_request: float = Field(description="Model requests per run.")
    memory_mb: float = Field(description="Resident memory of this process.")
    active_runs: int
    breakers: dict[str, BreakerState] = Field(
        description="The circuit breaker of each model this process has called: closed, half_open or open."
    )
    version: str
    uptime_s: float = Field(description="Seconds since this process started.")


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE_LATEST)


@router.get("/v1/stats", response_model=StatsOut, summary="A snapshot of this process's recent runs")
async def stats(state: State, _user: User) -> Any:
    snapshot = state.started().telemetry.stats.snapshot()
    if state.runtime is not None:
        snapshot["active_runs"] = state.runtime.active_runs
    snapshot["breakers"] = await _breakers(state)
    snapshot["version"] = __version__
    snapshot["uptime_s"] = round(time.monotonic() - state.started_monotonic, 3)
    return snapshot


async def _breakers(state: AppState) -> dict[str, BreakerState]:
    """Each model the breaker has met, as a request would find it now: an open one past its reset
    time is half_open (its trial may go), which the gauge learns only when a request asks."""
    breaker = state.started().resilience.breaker
    return {model: _STATE_NAMES[(await breaker.peek(model)).state] for model in breaker.models()}
