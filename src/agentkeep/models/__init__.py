"""Which model serves a run: the operator's override, the agent's own, or the built-in local model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic_ai import Agent
from pydantic_ai.models import Model, infer_model

from agentkeep.errors import ConfigError

if TYPE_CHECKING:
    from agentkeep.models.local import LocalModel

LOCAL_PREFIX = "local:"
DEFAULT_MODEL = "local:smollm2"

__all__ = ["DEFAULT_MODEL", "model_label", "resolve_model"]


def resolve_model(override: str | None, agent: Agent[Any, Any]) -> Model | None:
    """The model to pass to `agent.run`, or None to let the agent use its own.

    `override` is AGENTKEEP_MODEL. An agent defined without a model runs on the built-in one.
    """
    if override:
        try:
            return model_from_string(override)
        except ConfigError as exc:
            raise ConfigError(f"AGENTKEEP_MODEL: {exc.message}") from None
    if agent.model is None:
        return model_from_string(DEFAULT_MODEL)
    return None


def model_from_string(name: str) -> Model:
    """A Pydantic AI model string, or `local:NAME` for the built-in model."""
    if name.startswith(LOCAL_PREFIX):
        return _local(name.removeprefix(LOCAL_PREFIX))
    try:
        model: Model = infer_model(name)
    except Exception as exc:
        raise ConfigError(f"cannot use model {name!r}: {exc}") from None
    return model


def _local(name: str) -> LocalModel:
    from agentkeep.models.local import LocalModelUnavailable, local_model

    try:
        model = local_model(name)
        model.model_file()  # fail at startup, with the install hint, rather than on the first run
    except (ValueError, LocalModelUnavailable) as exc:
        raise ConfigError(str(exc)) from None
    return model


def model_label(model: Model | str | None) -> str:
    """A bounded label for metrics and logs: the model's name as its provider knows it."""
    if model is None:
        return "unknown"
    if isinstance(model, str):
        return model.split(":", 1)[-1]
    return model.model_name
