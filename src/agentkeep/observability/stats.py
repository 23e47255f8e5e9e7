"""The `/v1/stats` snapshot: totals since the process started, rates and averages over recent runs.

Prometheus holds the full history; this is the quick look a person or a script takes without one.
`total_*` count every run this process finished. `error_rate`, `avg_*` and `p95_response_ms` are
over the last `WINDOW` runs, so they describe the server as it is now, not as it was at start-up.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["WINDOW", "RunSample", "RunStats", "memory_mb", "percentile"]

WINDOW = 1000
ERROR_STATUSES = frozenset({"failed", "interrupted"})  # a cancelled run is the caller's choice, not an error


@dataclass(frozen=True, slots=True)
class RunSample:
    """What one finished run contributes to the snapshot."""

    duration_ms: float
    tokens: int
    iterations: int
    tool_calls: int
    error: bool


class RunStats:
    """Running totals and a rolling window of the last `window` runs. Safe to use from any thread."""

    def __init__(self, window: int = WINDOW) -> None:
        self._recent: deque[RunSample] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.active_runs = 0
        self.total_requests = 0
        self.total_errors = 0
        self.total_tool_calls = 0
        self.total_tokens = 0

    def begin(self) -> None:
        with self._lock:
            self.active_runs += 1

    def end(self, sample: RunSample) -> None:
        with self._lock:
            self.active_runs -= 1
            self._recent.append(sample)
            self.total_requests += 1
            self.total_errors += sample.error
            self.total_tool_calls += sample.tool_calls
            self.total_tokens += sample.tokens

    def snapshot(self) -> dict[str, Any]:
        """The contract's `/v1/stats` body."""
        with self._lock:
            recent = list(self._recent)
            totals = {
                "total_requests": self.total_requests,
                "total_tool_calls": self.total_tool_calls,
                "total_errors": self.total_errors,
                "total_tokens": self.total_tokens,
            }
            active = self.active_runs
        n = len(recent)
        durations = [s.duration_ms for s in recent]
        return {
            **totals,
            "error_rate": round(sum(s.error for s in recent) / n, 4) if n else 0.0,
            "avg_response_ms": round(sum(durations) / n, 3) if n else 0.0,
            "p95_response_ms": round(percentile(durations, 95), 3),
            "avg_tokens_per_request": round(sum(s.tokens for s in recent) / n, 3) if n else 0.0,
            "avg_iterations_per_request": round(sum(s.iterations for s in recent) / n, 3) if n else 0.0,
            "memory_mb": round(memory_mb(), 3),
            "active_runs": active,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile with linear interpolation between closest ranks (numpy's default).

    For 1..100, the 95th is 95.05; one value is its own percentile; no values give 0.
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def memory_mb() -> float:
    """Resident memory of this process now (Linux), or its peak where /proc is absent."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1_048_576
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in bytes on macOS and kilobytes elsewhere.
        return peak / 1_048_576 if sys.platform == "darwin" else peak / 1024
