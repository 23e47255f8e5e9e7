"""Agents for end-to-end tests: a real OpenAI-compatible client talking to the mock model server.

The mock's address comes from OPENAI_BASE_URL; every tool call appends a line to TOOL_LOG (when set)
so tests can count executions.
"""

import os
from pathlib import Path

from pydantic_ai import Agent

assistant = Agent("openai-chat:mock", name="assistant", instructions="You are a test assistant.")
helper = Agent("openai-chat:mock", name="helper")


@assistant.tool_plain
def add(a: int, b: int) -> int:
    """Add two integers."""
    log = os.environ.get("TOOL_LOG")
    if log:
        with Path(log).open("a") as fh:
            fh.write(f"add {a} {b}\n")
    return a + b


@assistant.tool_plain
def explode() -> str:
    """A tool that always fails."""
    raise RuntimeError("the tool broke")


agents = {"assistant": assistant, "helper": helper}
