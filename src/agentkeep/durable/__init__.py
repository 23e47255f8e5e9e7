"""Durable execution: background runs, multi-step tasks and schedules on DBOS Transact.

Modules, top to bottom (imports flow downwards only; the `durable` layers contract in
pyproject.toml checks it):

    deadline.py     a time box (a Lambda invocation): runs until a deadline, then stopped at a step boundary
    engine.py       DurableEngine: start, submit, submit_task, enqueue, cancel, notify, stop
    runner.py       the bodies of the run workflows: Runner.resume_run (an agent run), Runner.run_task
    schedules.py    `[[schedules]]`: applied to DBOS, each tick recorded and queued (Scheduler.fire)
    upgrade.py      runs left by another version of the code, and resuming them on this one
    upkeep.py       the worker's periodic pass: takeover, retention
    workflows.py    the registered DBOS workflows, and the registry of what executes them
    tasks.py        multi-step tasks: @task, @step, ask(); a task's record and failure
    takeover.py     heartbeats, and the takeover of a dead worker's runs
    checkpoints.py  what DBOS checkpoints: run_started, each model request and tool call (DurableSteps)
    asking.py       ask() inside a task: agent calls through the run pipeline, on the task's run
    webhooks.py     signed, retried, SSRF-checked completion webhooks
    setup.py        DBOS configuration: system database, executor id, application version, queue
    _dbos.py        every use of DBOS's private API, each with why

Which verb runs what, following a run id: `Runtime.execute` runs an agent run (sync, streamed, or
for `Runner.resume_run`); `Runtime.scope` is the life every run shares (admitted, counted, drained,
interrupted, recorded), which `Runtime.execute` and `Runner.run_task` both open; `DurableEngine.submit`
/ `submit_task` / `enqueue` queue a run; the workflow `agentkeep.run` calls `Runner.resume_run`
(started or resumed alike), `agentkeep.task` calls `Runner.run_task`, `agentkeep.scheduled` calls
`Scheduler.fire`, `agentkeep.webhook` calls `DurableEngine.deliver_webhook`.

The engine's writes to agentkeep's tables are the store's methods (`stores.sql`, `stores.workers`).
Importing this package does not import dbos; `DurableEngine.start()` does.
"""

from agentkeep.durable.engine import DurableEngine
from agentkeep.durable.setup import Identity, identity
from agentkeep.durable.tasks import ask, step, task

__all__ = ["DurableEngine", "Identity", "ask", "identity", "step", "task"]
