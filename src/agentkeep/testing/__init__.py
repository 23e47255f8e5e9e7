"""Test doubles shipped for users' tests: `agentkeep.testing.mock_llm` (a scripted OpenAI-compatible server).

Import from the module; the package re-exports nothing, so importing it loads nothing.
"""

__all__: list[str] = []
