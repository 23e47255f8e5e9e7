"""Agent runs started inside a run belong to it: the one place agentkeep patches Pydantic AI.

A tool that runs another agent (`await sub.run(q)`, with or without `usage=ctx.usage`) starts a
run of its own, and Pydantic AI 2.x gives a run's capabilities to that run alone: `capabilities=`
reaches only the run it is passed to, `Agent.override()` only the agent it is called on, and
`usage=ctx.usage` shares a counter, not hooks. The sub-agent's model requests would go around the
budget, the breakers, the retries, the metrics and the run's usage (upstream, pydantic-ai-harness
issue #947: "the parent's other capabilities are not forwarded into it"). So this module wraps
`Agent.iter`, which every way of running an agent goes through (`run`, `run_sync`, `run_stream`,
`run_stream_events`, `iter`, and a `WrapperAgent`'s calls):

    install()       once per process (the runtime does it); idempotent
    nested(nest)    while set, every `Agent.iter` call adds `nest.capability()` to its
                    capabilities and runs on `nest.model(agent, model=...)` when that names one

The run's capability (`pipeline.PipelineCapability`) sets the nest in `wrap_run`, around the run
body, whose ContextVars Pydantic AI makes ambient in tool tasks: the top-level call itself is never
touched, and each nested run's capability sets it again for its own children, so any depth is
covered. `tests/runtime/test_nesting.py` fails when Pydantic AI moves what this relies on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.models import Model

__all__ = ["ModelPolicy", "Nest", "current", "install", "installed", "nested"]

ModelPolicy = Callable[["Agent[Any, Any]", "Model | str | None"], "Model | None"]
"""The model a nested call of an agent runs on, given the `model=` the call passed; None leaves it be."""


@dataclass(frozen=True)
class Nest:
    """What an agent run started inside a run is given."""

    capability: Callable[[], AbstractCapability[Any]]  # a fresh capability on the enclosing run's state
    model: ModelPolicy | None = None


_NEST: ContextVar[Nest | None] = ContextVar("agentkeep_nest", default=None)
_ORIGINAL_ITER = Agent.iter


@functools.wraps(_ORIGINAL_ITER)
def _iter_in_run(self: Agent[Any, Any], user_prompt: Any = None, **kwargs: Any) -> Any:
    nest = _NEST.get()
    if nest is not None:
        kwargs["capabilities"] = [*(kwargs.get("capabilities") or ()), nest.capability()]
        model = nest.model(self, kwargs.get("model")) if nest.model is not None else None
        if model is not None:
            kwargs["model"] = model
    return _ORIGINAL_ITER(self, user_prompt, **kwargs)


def install() -> None:
    """Route every `Agent.iter` call through the nest; idempotent."""
    if Agent.iter is not _iter_in_run:
        Agent.iter = _iter_in_run  # type: ignore[method-assign]  # the one patch, see the docstring


def installed() -> bool:
    return Agent.iter is _iter_in_run


def current() -> Nest | None:
    """The nest agent runs started now would join; None outside a run."""
    return _NEST.get()


@contextmanager
def nested(nest: Nest) -> Iterator[None]:
    """Inside the block, agent runs started join `nest` (`PipelineCapability.wrap_run` sets it)."""
    token = _NEST.set(nest)
    try:
        yield
    finally:
        _NEST.reset(token)
