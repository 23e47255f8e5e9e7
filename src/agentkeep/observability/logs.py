"""Logs: one structlog pipeline for agentkeep's own events and for the stdlib's (uvicorn, libraries).

Every event becomes one line on stdout after the same final stage, whoever emitted it: a JSON line,
or a console line (`AGENTKEEP_LOG_FORMAT=console`; `auto`, the default, picks the console view when
stdout is a terminal and JSON otherwise, so a person at a shell reads lines and a collector parses them):

    add `component` → format the exception (a stack string in `exception`) → redact secrets
    → drop message text below debug → render

Redaction is last before rendering, so it also sees exception messages and stacks. What it removes:

- values under secret-looking keys (`Authorization`, `Cookie`, `*_api_key`, `password`, …);
- every secret the settings know (`Settings.secret_values()`: provider `*_API_KEY` values, the
  database and Redis URLs, the webhook secret), wherever it appears inside a string;
- anything shaped like a key: `Bearer …`, `sk-…` provider keys, agentkeep API keys (`ak_…`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from agentkeep.config import Settings

__all__ = ["REDACTED", "TEXT_FIELDS", "Redactor", "configure_logging", "drop_text_below_debug", "log_format"]

REDACTED = "[REDACTED]"

# Fields that may carry what a user or a model wrote; they appear only in debug-level events.
TEXT_FIELDS = frozenset({"prompt", "response_text", "args", "message_text", "output_text"})

_SECRET_KEY = re.compile(
    r"(^|[_-])(authorization|proxy_authorization|cookie|set_cookie|password|passwd|secret|api_key|apikey|"
    r"x_api_key|token|access_token|refresh_token|private_key)$",
    re.IGNORECASE,
)
# Shapes of keys, whoever they belong to. The look-behind keeps words like "task-list" intact.
_KEY_SHAPES = (
    r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{8,}",
    r"(?<![A-Za-z0-9])ak_[A-Za-z0-9_\-]{16,}",
    r"(?<=Bearer )[^\s\"',;]+",
    r"(?<=Basic )[A-Za-z0-9+/=]{8,}",
)
_MAX_DEPTH = 8


class Redactor:
    """A structlog processor replacing secrets with `[REDACTED]` anywhere in an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if s}, key=len, reverse=True)
        # Longest first, so a secret that contains another is removed whole.
        self._pattern = re.compile("|".join([*(re.escape(s) for s in known), *_KEY_SHAPES]))

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        for key, value in event.items():
            event[key] = REDACTED if _is_secret_key(key) and value else self._clean(value, 0)
        return event

    def redact(self, text: str) -> str:
        """`text` with every secret replaced."""
        return self._pattern.sub(REDACTED, text)

    def _clean(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self._pattern.sub(REDACTED, value) if self._pattern.search(value) else value
        if depth >= _MAX_DEPTH or isinstance(value, int | float | bool) or value is None:
            return value
        if isinstance(value, dict):
            return {
                k: REDACTED if isinstance(k, str) and _is_secret_key(k) and v else self._clean(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._clean(v, depth + 1) for v in value]
        if isinstance(value, bytes):
            return self._clean(value.decode("utf-8", "replace"), depth)
        # Anything else is rendered by the JSON renderer through str(); clean that string now.
        return self._clean(str(value), depth)


_key_verdicts: dict[str, bool] = {}


def _is_secret_key(key: str) -> bool:
    verdict = _key_verdicts.get(key)
    if verdict is None:
        verdict = bool(_SECRET_KEY.search(key.replace("-", "_")))
        if len(_key_verdicts) < 10_000:  # field names are few; the cap only guards against odd callers
            _key_verdicts[key] = verdict
    return verdict


def drop_text_below_debug(_: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """Message text (prompts, model output, tool arguments) is logged only at debug level."""
    if method != "debug":
        for key in TEXT_FIELDS.intersection(event):
            del event[key]
    return event


def add_component(logger: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Name the part of agentkeep (or the library) an event comes from, unless the event says it."""
    if "component" not in event:
        record = event.get("_record")
        name = record.name if record is not None else getattr(logger, "name", "agentkeep")
        head, _sep, rest = name.partition(".")
        event["component"] = (rest.partition(".")[0] or head) if head == "agentkeep" else head
    return event


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's plain line writer, knowing the name it was asked for (for `component`)."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


def log_format(setting: str, stream: TextIO) -> str:
    """`json` or `console`: what AGENTKEEP_LOG_FORMAT asks for, `auto` deciding by whether `stream` is a terminal."""
    if setting != "auto":
        return setting
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def _renderer(setting: str, stream: TextIO) -> Processor:
    if log_format(setting, stream) == "json":
        return structlog.processors.JSONRenderer()
    # Colours only for a terminal: `console` forced into a file keeps it free of escape codes.
    return structlog.dev.ConsoleRenderer(colors=bool(getattr(stream, "isatty", lambda: False)()))


def configure_logging(settings: Settings) -> None:
    """JSON lines on stdout (or a console view); uvicorn and the stdlib go through the same pipeline.

    agentkeep's own events take structlog's direct path to stdout (half the cost of a detour through
    `logging`: ~30 µs an event instead of ~65); the stdlib's records (uvicorn, libraries) reach the
    same processors through a `ProcessorFormatter`, so both kinds of line look alike.
    """
    level = getattr(logging, settings.log_level.upper())
    stream = sys.stdout
    renderer = _renderer(settings.log_format, stream)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    final: list[Processor] = [
        add_component,
        # The stack as one string field, never frame locals (where clients keep their keys).
        structlog.processors.format_exc_info,
        Redactor(settings.secret_values()),
        drop_text_below_debug,
    ]
    structlog.configure(
        processors=[*shared, *final, renderer],
        logger_factory=lambda name="agentkeep", *_: _NamedWriteLogger(stream, name),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[final[0], structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final[1:], renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Client libraries log every HTTP request (httpx at info, the rest at debug): agentkeep's own
    # model.request event says the same once, with ids and latency, so keep theirs to warnings.
    for name in ("httpx", "httpx2", "httpcore", "openai", "anthropic", "aiosqlite", "sqlalchemy", "asyncio"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
