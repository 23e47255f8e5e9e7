"""Agent calls from inside a task (`ask()`), through the same hooks as any run.

A task is one run: one record, one budget, one line in the metrics. Each `ask()` inside it is an
agent call on that run, sent through the pipeline the runtime gives every run:

    DurableSteps   each model request and tool call a checkpointed step (a plain call inside a
                   `@step`, whose result is the checkpoint; checkpoints.py)
    the runtime's  telemetry, breakers and retries, the budget: reservations against the run's,
                   session's and user's caps, and every request in the ledger under the task's run id

So a task whose agent calls reach a cap fails with `budget_exceeded`, and its `GET /v1/runs/{id}`
shows what its calls used and cost. Each call gets its own `RunState` (its usage, its deadline for
retries) sharing the task's `extras`, so the budget and telemetry see one run; what a call used is
added to the task's state when it returns. A `@step` that finished before a crash is not run again
on resume, so what its calls used is checkpointed with its result (a `Tally`) and re-applied; the
cost needs no such help, as the budget reads the run's spend back from the ledger.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.run import AgentRunResult

from agentkeep.hooks import Hook, RunState, Usage
from agentkeep.runtime import Runtime

__all__ = ["CURRENT", "Tally", "TaskContext", "current_tally", "tally_scope"]


@dataclass
class Tally:
    """What the agent calls inside one step used; checkpointed with the step's result."""

    usage: Usage = field(default_factory=Usage)
    tools: list[str] = field(default_factory=list)

    def add(self, usage: Usage, tools: Sequence[str]) -> None:
        for name, value in usage.as_dict().items():
            setattr(self.usage, name, getattr(self.usage, name) + value)
        for tool in tools:
            if tool not in self.tools:
                self.tools.append(tool)


_TALLY: ContextVar[Tally | None] = ContextVar("agentkeep_step_tally", default=None)


@contextmanager
def tally_scope(tally: Tally) -> Iterator[Tally]:
    """Inside the block, agent calls also count into `tally` (the step being executed)."""
    token = _TALLY.set(tally)
    try:
        yield tally
    finally:
        _TALLY.reset(token)


def current_tally() -> Tally | None:
    """The tally of the step executing now, if any."""
    return _TALLY.get()


@dataclass
class TaskContext:
    """One task run in progress: its state, and the hooks its agent calls go through (the run
    scope's: the checkpoints outermost, then the runtime's)."""

    runtime: Runtime
    state: RunState
    hooks: Sequence[Hook]

    async def ask(self, agent: Agent[Any, Any], prompt: str) -> AgentRunResult[Any]:
        """Run `agent` on `prompt` as one call of this task's run, on the model the server uses for it."""
        run = self.state
        call = RunState(run.run_id, run.session_id, run.user_id, run.agent, run.background, metadata=run.metadata)
        call.cost_usd, call.extras = run.cost_usd, run.extras
        try:
            # A served agent gets its deps from its factory, with the task's run ids (`Runtime.run_agent`).
            capability = self.runtime.capability(call, self.hooks)
            return await self.runtime.run_agent(agent, prompt, capability, model=self.runtime.model_for(agent))
        finally:
            self.absorb(call.usage, call.tools_used, call.cost_usd)

    def absorb(self, usage: Usage, tools: Sequence[str], cost_usd: float | None) -> None:
        """Add what a call used to the task's run (and to the step executing it)."""
        run = self.state
        Tally(run.usage, run.tools_used).add(usage, tools)  # a Tally over the run's own counters adds into them
        tally = _TALLY.get()
        if tally is not None:
            tally.add(usage, tools)
        # The budget reports the run's running total, which only grows: keep the largest seen
        # (calls running side by side finish in any order). None, unpriced, stays None.
        run.cost_usd = None if cost_usd is None or run.cost_usd is None else max(run.cost_usd, cost_usd)

    def replay(self, tally: Tally) -> None:
        """A step returned its checkpoint without running: count what its calls had used."""
        Tally(self.state.usage, self.state.tools_used).add(tally.usage, tally.tools)


CURRENT: ContextVar[TaskContext | None] = ContextVar("agentkeep_task", default=None)
"""The task run executing in this context; None outside a task."""
