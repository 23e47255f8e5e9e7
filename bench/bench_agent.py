"""The benchmark's agent: 2 model requests and 1 tool call per run against the mock model server."""

from pydantic_ai import Agent

agent = Agent("openai-chat:mock", name="bench")


@agent.tool_plain
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
