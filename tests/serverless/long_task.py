"""A task longer than any one worker invocation: six slow steps, each noted in SIDE_EFFECT_FILE.

The file counts executions: a step started twice, even if cut the first time, appears twice.
"""

import asyncio
import os
from pathlib import Path

from pydantic_ai import Agent

from agentkeep.durable import step, task

agent = Agent("openai-chat:mock", name="assistant")

STEPS = 6


def _note(line: str) -> None:
    with Path(os.environ["SIDE_EFFECT_FILE"]).open("a") as fh:
        fh.write(line + "\n")


@step
async def slow_step(number: int) -> int:
    _note(f"start {number}")  # a step cut mid-way and executed again would start twice
    await asyncio.sleep(float(os.environ.get("STEP_S", "0.5")))
    _note(f"done {number}")
    return number


@task("long")
async def long(input: dict) -> str:
    done = [await slow_step(number) for number in range(1, STEPS + 1)]
    return ",".join(map(str, done))
