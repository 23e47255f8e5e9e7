"""Agent delegation shaped like Pydantic AI's examples (joke selection, medical triage): a tool that runs
a second agent on another model name, with and without `usage=ctx.usage`.

    triage (openai-chat:mock)
      consult_specialist   runs `specialist` (openai-chat:mock-specialist) with usage=ctx.usage
      second_opinion       runs `reviewer` (openai-chat:mock-reviewer) without it; the reviewer
                           itself asks `librarian`, which has no model of its own (depth 2)

The mock model server answers every one of them (OPENAI_BASE_URL); its per-model counts tell the
agents apart. With TOOL_SLEEP_S set, `second_opinion` waits that long after its sub-agent answered,
so a test can kill the process after the tool's sub-agent ran and before the tool returns.
"""

import asyncio
import os

from pydantic_ai import Agent, RunContext

triage = Agent(
    "openai-chat:mock",
    name="triage",
    instructions="You are a triage clinician. Consult a specialist, then ask for a second opinion.",
)
specialist = Agent("openai-chat:mock-specialist", name="specialist", instructions="You are a cardiologist.")
reviewer = Agent("openai-chat:mock-reviewer", name="reviewer", instructions="You review diagnoses.")
librarian = Agent(name="librarian", instructions="You look up references.")


@triage.tool
async def consult_specialist(ctx: RunContext[None], question: str) -> str:
    """Ask the specialist, counting its usage with this run's."""
    result = await specialist.run(f"Consultation: {question}", usage=ctx.usage)
    return result.output


@triage.tool_plain
async def second_opinion(question: str) -> str:
    """Ask the reviewer, as a separate run (no shared usage)."""
    result = await reviewer.run(question)
    await asyncio.sleep(float(os.environ.get("TOOL_SLEEP_S", "0")))
    return result.output


@reviewer.tool_plain
async def look_up(topic: str) -> str:
    """Ask the librarian, an agent built without a model."""
    return (await librarian.run(f"References on {topic}")).output
