"""A Lambda execution environment, for tests: one fresh interpreter is one container.

Reads one JSON request per line on stdin and answers one JSON line on stdout (the handlers'
own output goes to stderr):

    {"handler": "handler", "event": {...}}                      → {"result": <the handler's return>}
    {"handler": "worker_handler", "event": {}, "remaining_ms": N} → the worker with N ms left
    a handler that raises                                        → {"error": "<type>: <message>"}

As Lambda does, it imports the handlers' module once and reuses it across invocations.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import agentkeep.serverless as functions


class FakeContext:
    """The part of Lambda's context object the handlers use: time left, counting down for real."""

    def __init__(self, remaining_ms: float) -> None:
        self._deadline = time.monotonic() + remaining_ms / 1000
        self.function_name = "agentkeep-test"
        self.aws_request_id = "test-request"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    # The handlers log to stdout, as on Lambda; the answers get the original stdout to themselves.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    for line in sys.stdin:
        request: dict[str, Any] = json.loads(line)
        handler = getattr(functions, request["handler"])
        try:
            answer = {"result": handler(request["event"], FakeContext(request.get("remaining_ms", 900_000)))}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
