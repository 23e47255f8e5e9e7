"""The settings the tools read, loaded once on first use.

Tools are plain functions handed to an agent, so nothing passes them a `Settings`; they read it
here lazily. `reset()` forgets the cached copy (tests change the environment and call it).
"""

from __future__ import annotations

import functools

from agentkeep.config import Settings, load_settings


@functools.cache
def tool_settings() -> Settings:
    """The process's settings, read on the first tool call."""
    return load_settings()


def reset() -> None:
    """Forget the cached settings so the next tool call reads them again."""
    tool_settings.cache_clear()


def comma_list(value: str | None) -> tuple[str, ...]:
    """`"a, b,,c"` → `("a", "b", "c")`."""
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())
