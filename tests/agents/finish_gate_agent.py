"""An agent that pauses at the finish boundary: after its last model response, before the run is recorded.

Its output validator writes `GATE_DIR/finishing` and waits for `GATE_DIR/release`, so a test can act
(cancel the run) at exactly that point and then let the run try to record its success.
"""

import asyncio
import os
import time
from pathlib import Path

from pydantic_ai import Agent

agent = Agent("openai-chat:mock", name="gated", instructions="You are a test assistant.")


@agent.output_validator
async def hold_at_the_finish(output: str) -> str:
    gate = Path(os.environ["GATE_DIR"])
    (gate / "finishing").touch()
    deadline = time.monotonic() + 60
    while not (gate / "release").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return output
