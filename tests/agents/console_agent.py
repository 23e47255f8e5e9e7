"""The agents of the console's approval and structured-output tests: `approval_agent.py`'s, and
`structured_agent.py`'s City and writer agents, served from one TARGET."""

import importlib.util
from pathlib import Path
from types import ModuleType


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"console_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_structured = _load("structured_agent")
agents = {**_load("approval_agent").agents, "city": _structured.city, "writer": _structured.writer}
