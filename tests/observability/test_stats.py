"""The /v1/stats arithmetic: a correct percentile, a bounded window, lifetime totals."""

from __future__ import annotations

import statistics

import pytest

from agentkeep.observability.stats import RunSample, RunStats, memory_mb, percentile


def _sample(ms: float, *, error: bool = False, tokens: int = 10, iterations: int = 2, tools: int = 1) -> RunSample:
    return RunSample(duration_ms=ms, tokens=tokens, iterations=iterations, tool_calls=tools, error=error)


def test_p95_interpolates_between_ranks_like_numpy() -> None:
    """95th of 1..100 is 95.05 (linear interpolation), not 95 or 96; edge cases are defined."""
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 95) == pytest.approx(statistics.quantiles(values, n=100, method="inclusive")[94])
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 95) == 0.0
    assert percentile([1.0, 2.0], 50) == 1.5


def test_rates_and_averages_cover_only_the_last_window_of_runs_while_totals_cover_all() -> None:
    """After 5 slow errors then 10 fast successes with a window of 10, only the successes shape the rates."""
    stats = RunStats(window=10)
    for _ in range(5):
        stats.begin()
        stats.end(_sample(1000, error=True, tokens=100))
    for _ in range(10):
        stats.begin()
        stats.end(_sample(10, tokens=20, iterations=3))
    snap = stats.snapshot()
    assert snap["total_requests"] == 15 and snap["total_errors"] == 5
    assert snap["total_tokens"] == 5 * 100 + 10 * 20 and snap["total_tool_calls"] == 15
    assert snap["error_rate"] == 0.0
    assert snap["avg_response_ms"] == 10 and snap["p95_response_ms"] == 10
    assert snap["avg_tokens_per_request"] == 20 and snap["avg_iterations_per_request"] == 3
    assert snap["active_runs"] == 0


def test_snapshot_has_exactly_the_contract_fields_and_counts_active_runs() -> None:
    """The body is the contract's, with memory from the live process and runs in progress."""
    stats = RunStats()
    stats.begin()
    stats.begin()
    stats.end(_sample(5, error=True))
    snap = stats.snapshot()
    assert set(snap) == {
        "total_requests",
        "total_tool_calls",
        "total_errors",
        "total_tokens",
        "error_rate",
        "avg_response_ms",
        "p95_response_ms",
        "avg_tokens_per_request",
        "avg_iterations_per_request",
        "memory_mb",
        "active_runs",
    }
    assert snap["active_runs"] == 1 and snap["error_rate"] == 1.0
    assert 5 < snap["memory_mb"] < 100_000


def test_memory_is_the_resident_size_of_this_process() -> None:
    """Allocating 64 MB shows up in memory_mb: it is current RSS, not a constant or a peak from start-up."""
    before = memory_mb()
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])
    assert memory_mb() - before > 50
    del block
