"""An agent for the durable-run tests: tools with side effects the tests can count.

`append_line` (declared idempotent) and `charge` (not) append to SIDE_EFFECT_FILE. At entry each
writes `<name> <text> <idempotency key>` to SIDE_EFFECT_FILE.keys, then waits TOOL_SLEEP_S, so a
test can kill the process while a call is in flight and before its side effect.
"""

import os
import time
from pathlib import Path

from pydantic_ai import Agent

from agentkeep.hooks import idempotency_key

agent = Agent("openai-chat:mock", name="durable", instructions="You are a test assistant.")


def _effect(name: str, text: str) -> None:
    side = Path(os.environ["SIDE_EFFECT_FILE"])
    with Path(f"{side}.keys").open("a") as fh:
        fh.write(f"{name} {text} {idempotency_key()}\n")
    time.sleep(float(os.environ.get("TOOL_SLEEP_S", "0")))
    with side.open("a") as fh:
        fh.write(f"{text}\n")


@agent.tool_plain(metadata={"idempotent": True})
def append_line(text: str) -> str:
    """Append a line to the side-effect file; safe to repeat."""
    _effect("append_line", text)
    return f"appended {text}"


@agent.tool_plain
def charge(amount: int) -> str:
    """A payment-style call: must never run twice."""
    _effect("charge", str(amount))
    return f"charged {amount}"
