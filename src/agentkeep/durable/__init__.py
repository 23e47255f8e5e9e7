"""Durable execution: background runs, multi-step tasks and schedules on DBOS Transact.

    engine.py     DurableEngine: launch, enqueue, execute, cancel, stop
    setup.py      DBOS configuration: system database, executor id, application version
    steps.py      DurableSteps: model requests and tool calls as checkpointed steps
    workflows.py  the registered workflows
    runs.py       the engine's conditional writes to agentkeep's tables
    tasks.py      multi-step tasks: @task, @step, ask()
    asking.py     ask() inside a task: agent calls through the run pipeline, on the task's run
    takeover.py   heartbeats, and the takeover of a dead worker's runs
    upkeep.py     the worker's periodic pass: takeover, retention, schedules
    webhooks.py   signed, retried, SSRF-checked completion webhooks
    deadline.py   a time box (a Lambda invocation): runs until a deadline, then stopped at a step boundary

Importing this package does not import dbos; `DurableEngine.start()` does.
"""

from agentkeep.durable.engine import DurableEngine
from agentkeep.durable.setup import Identity, identity
from agentkeep.durable.tasks import ask, step, task

__all__ = ["DurableEngine", "Identity", "ask", "identity", "step", "task"]
