"""Agents that need a person's decision before some tool calls, shaped like Pydantic AI's tool-approval
example: a file assistant whose deletes need approval, whose edits of `.env` ask for it from inside the
tool, and whose lookups of a price are answered from outside (an external call).

Three agents with the same tools, one per way agentkeep makes a run pause on them (`agentkeep.deferred`):

    files     the example's own shape: `output_type=[str, DeferredToolRequests]`
    plain     a plain text agent: agentkeep widens its output type for each run
    checked   an agent with an output validator: agentkeep pauses it through a capability

Every tool that acts appends `<tool> <path> <idempotency key>` to SIDE_EFFECT_FILE, so a test counts
how often it really ran (`update_file` also notes each time it was entered, in SIDE_EFFECT_FILE.entered).
"""

import os
from pathlib import Path

from pydantic_ai import Agent, ApprovalRequired, CallDeferred, DeferredToolRequests, ModelRetry, RunContext

from agentkeep.hooks import idempotency_key

files = Agent(
    "openai-chat:mock",
    name="files",
    output_type=[str, DeferredToolRequests],
    instructions="You manage the user's files. Deleting needs approval; so does editing .env.",
)
plain = Agent("openai-chat:mock", name="plain", instructions="You manage the user's files.")
checked = Agent("openai-chat:mock", name="checked", instructions="You manage the user's files.")


@checked.output_validator
def no_drafts(ctx: RunContext[None], answer: str) -> str:
    """An answer that calls itself a draft is sent back for another go."""
    if not ctx.partial_output and answer.startswith("draft"):
        raise ModelRetry("that was a draft: give the final answer")
    return answer


def _note(path: Path, line: str) -> None:
    with path.open("a") as fh:
        fh.write(line + "\n")


def _effect(tool: str, path: str) -> None:
    _note(Path(os.environ["SIDE_EFFECT_FILE"]), f"{tool} {path} {idempotency_key()}")


def update_file(ctx: RunContext[None], path: str, content: str) -> str:
    """Write `content` to the file at `path`."""
    _note(Path(os.environ["SIDE_EFFECT_FILE"] + ".entered"), f"update_file {path}")
    if path == ".env" and not ctx.tool_call_approved:
        raise ApprovalRequired(metadata={"reason": "protected file"})
    _effect("update_file", path)
    return f"file {path!r} updated"


def delete_file(path: str) -> str:
    """Delete the file at `path`."""
    _effect("delete_file", path)
    return f"file {path!r} deleted"


def read_file(path: str) -> str:
    """Read the file at `path`."""
    return f"contents of {path}"


def corrupt_file(path: str) -> str:
    """A tool that always breaks."""
    raise RuntimeError(f"the disk holding {path} failed")


def price_of(item: str) -> str:
    """The current price of `item`, looked up by the client."""
    raise CallDeferred(metadata={"item": item})


for agent in (files, plain, checked):
    agent.tool(update_file)
    agent.tool_plain(requires_approval=True)(delete_file)
    agent.tool_plain(read_file)
    agent.tool_plain(price_of)
    agent.tool_plain(corrupt_file)

agents = {"files": files, "plain": plain, "checked": checked}
