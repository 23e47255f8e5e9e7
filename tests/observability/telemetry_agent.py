"""The agent for the observability end-to-end tests: a working tool, a failing one, and a leaky one.

`leak` does what a careless tool might: it logs the provider key through the stdlib and structlog,
and raises with the key in the message. Redaction must keep every copy out of the log stream.
"""

import logging
import os

import structlog
from pydantic_ai import Agent

assistant = Agent("openai-chat:mock", name="assistant")


@assistant.tool_plain
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@assistant.tool_plain
def explode() -> str:
    """A tool that always fails."""
    raise RuntimeError("the tool broke")


@assistant.tool_plain
def leak() -> str:
    """Log the provider key three ways, then fail with it in the message."""
    key = os.environ["OPENAI_API_KEY"]
    logging.getLogger("careless.tool").warning("calling upstream with key %s", key)
    structlog.get_logger("careless.tool").info("upstream", headers={"Authorization": f"Bearer {key}"}, key=key)
    raise RuntimeError(f"upstream rejected key {key}")
