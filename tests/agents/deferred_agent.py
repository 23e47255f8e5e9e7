"""An agent built as Pydantic AI's docs show for a model chosen later: a model string, its check deferred
(no provider key is needed to build it), and no `name`, so the server names it after this file."""

from pydantic_ai import Agent

support = Agent("anthropic:claude-sonnet-4-5", defer_model_check=True, instructions="You are a test assistant.")
