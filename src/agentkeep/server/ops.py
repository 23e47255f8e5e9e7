"""Operator routes: `GET /metrics` (Prometheus text) and `GET /v1/stats` (the JSON snapshot)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from agentkeep.observability import Telemetry, metrics
from agentkeep.server.routes import State, User

router = APIRouter()


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


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE_LATEST)


@router.get("/v1/stats", response_model=StatsOut, summary="A snapshot of this process's recent runs")
async def stats(request: Request, state: State, _user: User) -> Any:
    telemetry: Telemetry = request.app.state.telemetry
    snapshot = telemetry.stats.snapshot()
    if state.runtime is not None:
        snapshot["active_runs"] = state.runtime.active_runs
    return snapshot
