"""An agent with the file tools and run_python, and a task whose agent call uses them: the
workspace end-to-end tests drive it with the mock model's scripted tool calls."""

from pydantic_ai import Agent

from agentkeep.durable import ask, task
from agentkeep.tools import list_files, read_file, run_python, write_file

agent = Agent("openai-chat:mock", name="files", tools=[read_file, write_file, list_files, run_python])


@task("note")
async def note(input: dict) -> str:
    """One agent call inside a task: what its tools write lands in the task's own session folder."""
    return await ask(agent, f"note: {input.get('text', '')}")
