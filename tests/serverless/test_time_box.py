"""How `worker_handler` divides an invocation's remaining time."""

from __future__ import annotations

import pytest

from agentkeep.serverless.worker import time_box


@pytest.mark.parametrize(
    ("remaining_s", "stop_at", "hard_stop_at"),
    [
        (900.0, 835.0, 895.0),  # the template's worker: 60 s for a step in flight, 5 s to stop
        (60.0, 48.0, 57.0),  # 15 % and 5 %
        (3.0, 1.7, 2.7),  # the floors: 1 s for a step in flight, 0.3 s to stop
        (0.5, 0.0, 0.2),  # too short for any step: none starts
    ],
)
def test_steps_start_until_stop_at_and_the_engine_stops_by_hard_stop_at(
    remaining_s: float, stop_at: float, hard_stop_at: float
) -> None:
    assert time_box(remaining_s) == pytest.approx((stop_at, hard_stop_at))
