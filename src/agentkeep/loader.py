"""Find the user's agents from a TARGET: `module:attr`, `module`, `path/to/file.py[:attr]`.

The attribute may be a `pydantic_ai.Agent`, an `agentkeep.AgentApp`, or a dict of name → either.
Without an attribute, the module's `agents` dict or its single Agent or AgentApp is taken (an Agent
that an AgentApp of the module wraps is that app's, not a second candidate). Every failure is a
`ConfigError` with one line a person can act on.

A served agent's name, strongest first: the dict's key; `AgentApp(name=)`; the agent's own `name`;
the attribute the TARGET names; the module's name (a file's stem).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic_ai import Agent

from agentkeep.apps import AgentApp, AgentMap, as_app
from agentkeep.errors import ConfigError

__all__ = ["AgentMap", "load_agents", "target_source"]

_FILE_MODULE_PREFIX = "agentkeep_target_"


def load_agents(target: str) -> dict[str, AgentApp[Any]]:
    """Import TARGET and return its agents by name, in definition order, each as an `AgentApp`."""
    module_ref, _, attr = _split(target)
    module = _import(module_ref)
    obj = _pick(module, attr, target)
    return _as_apps(obj, attr or module.__name__.rsplit(".", 1)[-1].removeprefix(_FILE_MODULE_PREFIX), target)


def target_source(target: str) -> Path | None:
    """The file TARGET's module came from (once loaded): its content versions durable runs."""
    module_ref, _, _ = _split(target)
    if module_ref.endswith(".py") or "/" in module_ref:
        return Path(module_ref).resolve()
    file = getattr(sys.modules.get(module_ref), "__file__", None)
    return Path(file) if file else None


def _split(target: str) -> tuple[str, str, str]:
    target = target.strip()
    if not target:
        raise ConfigError("TARGET is empty: give module:attr or path/to/file.py[:attr]")
    # A Windows-free rule: the last colon separates the attribute unless it belongs to the path.
    head, sep, tail = target.rpartition(":")
    if sep and tail and "/" not in tail and not tail.endswith(".py"):
        return head, sep, tail
    return target, "", ""


def _import(module_ref: str) -> ModuleType:
    if module_ref.endswith(".py") or "/" in module_ref:
        return _import_file(Path(module_ref))
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_ref)
    except ModuleNotFoundError as exc:
        if exc.name and module_ref.startswith(exc.name):
            raise ConfigError(f"cannot import {module_ref!r}: no module named {exc.name!r}") from None
        raise ConfigError(f"importing {module_ref!r} failed: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"importing {module_ref!r} failed: {type(exc).__name__}: {exc}") from None


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigError(f"agent file not found: {path}")
    name = f"{_FILE_MODULE_PREFIX}{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ConfigError(f"loading {path} failed: {type(exc).__name__}: {exc}") from None
    return module


def _pick(module: ModuleType, attr: str, target: str) -> object:
    if attr:
        if not hasattr(module, attr):
            raise ConfigError(f"{target!r}: module {module.__name__!r} has no attribute {attr!r}")
        return getattr(module, attr)
    if isinstance(getattr(module, "agents", None), dict):
        return module.agents
    public = {k: v for k, v in vars(module).items() if not k.startswith("_")}
    apps = {k: v for k, v in public.items() if isinstance(v, AgentApp)}
    wrapped = {id(app.agent) for app in apps.values()}
    found = {**apps, **{k: v for k, v in public.items() if isinstance(v, Agent) and id(v) not in wrapped}}
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise ConfigError(f"{target!r} defines no pydantic_ai.Agent; name one as {target}:ATTR")
    raise ConfigError(f"{target!r} defines several agents ({', '.join(found)}); name one as {target}:ATTR")


def _as_apps(obj: object, default_name: str, target: str) -> dict[str, AgentApp[Any]]:
    if isinstance(obj, Agent | AgentApp):
        app = as_app(obj)
        return {app.name or app.agent.name or default_name: app}
    if isinstance(obj, dict) and obj:
        bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Agent | AgentApp)]
        if bad:
            raise ConfigError(
                f"{target!r}: entries {', '.join(bad)} are not name → pydantic_ai.Agent or agentkeep.AgentApp"
            )
        return {name: as_app(served) for name, served in obj.items()}
    kind = type(obj).__name__
    raise ConfigError(
        f"{target!r} is a {kind}, not a pydantic_ai.Agent, an agentkeep.AgentApp or a dict of name → either"
    )
