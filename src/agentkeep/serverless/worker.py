"""`worker_handler`'s time box: how much of an invocation goes to runs, and what it reports.

An invocation with R seconds left is cut in three:

    [ runs start steps ........ | steps in flight finish | engine stops ]
    0                        stop_at               hard_stop_at          R

The last part (5 % of R, 0.3-5 s) shuts DBOS down and returns; the middle one (15 % of R,
1-60 s) lets a step that started before `stop_at` end and be checkpointed. A step that outlives
it is cut when Lambda ends the invocation and runs again in the next one: keep single steps
(one model request, one tool call, one `@step`) well under the worker's timeout.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from agentkeep.durable.deadline import drain_until
from agentkeep.serverless.container import container

__all__ = ["time_box", "work"]

# Without a context (a local call), the time box of a Lambda function at its 900 s cap.
_DEFAULT_REMAINING_S = 900.0


def time_box(remaining_s: float) -> tuple[float, float]:
    """(stop_at, hard_stop_at) in seconds from now, for an invocation with `remaining_s` left."""
    hard = remaining_s - min(5.0, max(0.3, 0.05 * remaining_s))
    stop = hard - min(60.0, max(1.0, 0.15 * remaining_s))
    return max(0.0, stop), max(0.0, hard)


def work(context: Any) -> dict[str, Any]:
    """One invocation of the worker: execute runs inside the time box, on the container's one durable
    engine (started and stopped by `drain_until`), and return what was done."""
    box = container(http=False)
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    remaining = remaining_ms() / 1000 if callable(remaining_ms) else _DEFAULT_REMAINING_S
    now = time.monotonic()
    stop_in, hard_in = time_box(remaining)
    report = box.loop.run_until_complete(drain_until(box.services.durable, now + stop_in, now + hard_in))
    return asdict(report)
