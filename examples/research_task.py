"""A durable research task: plan with an agent, research each planned step with an agent, summarize.

Each step is checkpointed: kill the server mid-task and start it again, and the task resumes at
the first unfinished step; the model calls of finished steps are not made (or paid for) again.
A step that fails is retried 3 times with exponential backoff before it fails the task.

    AGENTKEEP_MODEL=openai:gpt-4o-mini OPENAI_API_KEY=sk-... agentkeep serve examples/research_task.py
    curl -s -X POST localhost:8000/v1/tasks/research -H 'Content-Type: application/json' \\
         -d '{"input": {"topic": "how SQLite WAL mode works"}}'
    curl -s localhost:8000/v1/runs/RUN_ID           # queued → running → succeeded, with the summary

Without AGENTKEEP_MODEL the agents run on the built-in local model (small: expect short answers).
The agents are served too: `POST /v1/runs {"agent": "planner", ...}` talks to one directly.
"""

from pydantic_ai import Agent

from agentkeep.durable import ask, step, task

MAX_STEPS = 5

planner = Agent(
    name="planner",
    instructions=(
        f"You plan research. Answer with at most {MAX_STEPS} short research questions, one per line, "
        "with no numbering and nothing else."
    ),
)
researcher = Agent(name="researcher", instructions="You answer one research question in a short paragraph.")
writer = Agent(name="writer", instructions="You write a concise summary of research notes, in a few paragraphs.")

agents = {"planner": planner, "researcher": researcher, "writer": writer}


@step
async def plan(topic: str) -> list[str]:
    """The research questions for `topic`."""
    answer = await ask(planner, f"Topic: {topic}")
    questions = [line.strip(" -*\t") for line in answer.splitlines() if line.strip(" -*\t")]
    return questions[:MAX_STEPS] or [topic]


@step
async def research(question: str) -> str:
    """Notes answering one question."""
    return await ask(researcher, question)


@step
async def summarize(topic: str, notes: list[str]) -> str:
    """One summary of every note."""
    joined = "\n\n".join(f"- {note}" for note in notes)
    return await ask(writer, f"Topic: {topic}\n\nNotes:\n{joined}")


@task("research")
async def research_task(input: dict) -> str:
    """`POST /v1/tasks/research {"input": {"topic": "..."}}`."""
    topic = str(input.get("topic") or "").strip()
    if not topic:
        raise ValueError("input.topic is required")
    questions = await plan(topic)
    notes = [await research(question) for question in questions]
    return await summarize(topic, notes)
