"""The example agent `make run` serves.

It has no model of its own, so agentkeep runs it on the built-in local model (SmolLM2-135M, on
your CPU, offline). Point it at a real model without changing this file:

    AGENTKEEP_MODEL=openai:gpt-4o-mini OPENAI_API_KEY=sk-... make run
"""

from pydantic_ai import Agent

agent = Agent(
    name="assistant",
    instructions="You are a concise, friendly assistant. Answer in a few sentences.",
)
