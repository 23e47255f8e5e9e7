"""Tasks for the multi-step task tests; the agent answers from the mock model server.

Steps record each attempt in SIDE_EFFECT_FILE so tests can count executions. The `held` step
waits until GATE_DIR/release exists, so a test can act while a task's step is in flight.
"""

import asyncio
import os
import time
from pathlib import Path

from pydantic_ai import Agent

from agentkeep.durable import ask, step, task

agent = Agent("openai-chat:mock", name="helper")


def _note(line: str) -> int:
    """Append `line`; return how many times it is in the file now."""
    side = Path(os.environ["SIDE_EFFECT_FILE"])
    with side.open("a") as fh:
        fh.write(line + "\n")
    return side.read_text().splitlines().count(line)


@step
async def plan(topic: str) -> list[str]:
    _note("plan")
    return [line.strip() for line in (await ask(agent, f"plan: {topic}")).splitlines() if line.strip()]


@step
async def execute(item: str) -> str:
    _note(f"execute {item}")
    return await ask(agent, f"do: {item}")


@step
async def summarize(findings: list[str]) -> str:
    _note("summarize")
    return await ask(agent, "summarize: " + " | ".join(findings))


@task("research")
async def research(input: dict) -> str:
    items = await plan(input["topic"])
    return await summarize([await execute(item) for item in items])


@step(retries=3, backoff_s=0.1)
async def flaky() -> str:
    if _note("flaky attempt") <= 2:
        raise ConnectionError("the service is down")
    return "third time lucky"


@task("flaky")
async def flaky_task(input: dict) -> dict:
    return {"result": await flaky()}


@step(retries=2, backoff_s=0.1)
async def broken() -> str:
    _note("broken attempt")
    raise ValueError("always broken")


@task("doomed")
async def doomed(input: dict) -> str:
    return await broken()


@step
async def write(text: str, sleep_s: float) -> str:
    _note(f"{text} started")
    await asyncio.sleep(sleep_s)
    _note(text)
    return text


@task("two_writes")
async def two_writes(input: dict) -> str:
    first = await write("first", 0)
    second = await write("second", float(os.environ.get("TOOL_SLEEP_S", "0")))
    return f"{first}+{second}"


@step
async def held(name: str) -> str:
    _note(f"{name} started")
    release = Path(os.environ["GATE_DIR"]) / "release"
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    _note(name)
    return name


@task("held")
async def held_task(input: dict) -> str:
    first = await write("first", 0)
    return f"{first}+{await held('held')}"
