"""An agent holding every safe tool, served by test_tools_e2e.py against the mock model."""

from pydantic_ai import Agent

from agentkeep.tools import fetch_url, list_files, read_file, run_python, write_file

agent = Agent("openai-chat:mock", name="tools", tools=[fetch_url, read_file, write_file, list_files, run_python])
