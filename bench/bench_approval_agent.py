"""The approval benchmark's agents: the bench agent's one tool, run freely (`plain`) or after approval (`approve`)."""

from pydantic_ai import Agent

plain = Agent("openai-chat:mock", name="plain")
approve = Agent("openai-chat:mock", name="approve")


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


plain.tool_plain(add)
approve.tool_plain(requires_approval=True)(add)

agents = {"plain": plain, "approve": approve}
