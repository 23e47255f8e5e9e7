"""The log pipeline: JSON lines, bound context, components, exceptions, redaction, text only at debug."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import pytest
import structlog

from agentkeep.observability.logs import REDACTED, Redactor, drop_text_below_debug
from tests.observability.conftest import LogLines

CANARY = "sk-canary-0123456789abcdef"


def test_known_secrets_are_removed_wherever_they_appear_in_an_event() -> None:
    """A configured secret inside a string, a nested dict or a list is replaced; other text stays."""
    redact = Redactor(["hunter2-very-secret"])
    event = {
        "event": "connect failed: password=hunter2-very-secret at db",
        "detail": {"url": "postgresql://u:hunter2-very-secret@h/db", "hosts": ["a", "hunter2-very-secret"]},
        "count": 3,
    }
    out = redact(None, "info", event)
    assert out["event"] == f"connect failed: password={REDACTED} at db"
    assert out["detail"] == {"url": f"postgresql://u:{REDACTED}@h/db", "hosts": ["a", REDACTED]}
    assert out["count"] == 3


def test_key_shaped_values_and_secret_headers_are_removed_without_being_configured() -> None:
    """sk-… provider keys, ak_… agentkeep keys, Bearer tokens and Authorization/Cookie values go."""
    redact = Redactor()
    event = {
        "event": f"calling with {CANARY} and ak_0123456789abcdef_SECRETPART",
        "headers": {"Authorization": "Bearer opaque-token-value", "X-Api-Key": "k", "Accept": "json"},
        "line": "GET / Authorization: Bearer abc.def.ghi",
        "cookie": "session=1",
    }
    out = redact(None, "info", event)
    assert out["event"] == f"calling with {REDACTED} and {REDACTED}"
    assert out["headers"] == {"Authorization": REDACTED, "X-Api-Key": REDACTED, "Accept": "json"}
    assert out["line"] == f"GET / Authorization: Bearer {REDACTED}"
    assert out["cookie"] == REDACTED


def test_ordinary_words_and_token_counts_are_left_alone() -> None:
    """Redaction does not eat look-alikes: "task-list", short ak_ ids, and `input_tokens` counts."""
    redact = Redactor()
    event = {"event": "ran task-list-builder for ak_short", "input_tokens": 12, "max_tokens": 3}
    assert redact(None, "info", dict(event)) == event


def test_message_text_is_dropped_below_debug_and_kept_at_debug() -> None:
    """Prompts, model output and tool arguments stay out of info events."""
    event = {"event": "model.text", "prompt": "my diary", "response_text": "ok", "args": {"a": 1}, "model": "m"}
    assert drop_text_below_debug(None, "info", dict(event)) == {"event": "model.text", "model": "m"}
    assert drop_text_below_debug(None, "debug", dict(event)) == event


def test_every_event_is_one_json_line_with_bound_context_and_a_component(
    json_logs: Callable[..., LogLines],
) -> None:
    """structlog and stdlib (uvicorn) events share one format; bound ids ride along; component is set."""
    lines = json_logs()
    structlog.contextvars.bind_contextvars(run_id="run_1", session_id="ses_1")
    structlog.get_logger("agentkeep.runtime").info("run.started", agent="a")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    structlog.contextvars.clear_contextvars()
    structlog.get_logger("agentkeep.server").info("outside")
    first, second, third = lines()
    assert first["event"] == "run.started" and first["component"] == "runtime" and first["level"] == "info"
    assert first["run_id"] == "run_1" and first["session_id"] == "ses_1" and first["timestamp"].endswith("Z")
    assert second["event"] == "Started server process [42]" and second["component"] == "uvicorn"
    assert second["run_id"] == "run_1"
    assert third["component"] == "server" and "run_id" not in third


def test_an_error_carries_its_stack_in_a_field_redacted_and_without_locals(
    json_logs: Callable[..., LogLines],
) -> None:
    """exc_info renders as one `exception` string with the stack; frame locals (where keys live) are not shown."""
    lines = json_logs()
    api_key = CANARY

    def fail() -> None:
        raise ValueError(f"provider said no to {api_key}")

    try:
        fail()
    except ValueError as exc:
        structlog.get_logger("agentkeep.runtime").error("run.finished", exc_info=exc)
    try:
        fail()
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    for line in lines():
        assert line["exception"].startswith("Traceback (most recent call last):")
        assert ", in fail\n" in line["exception"]
        assert line["exception"].endswith(f"ValueError: provider said no to {REDACTED}")
        assert CANARY not in str(line)


def test_secrets_from_the_environment_are_redacted_in_every_logger(
    json_logs: Callable[..., LogLines], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider key from `*_API_KEY` never reaches the stream, whichever logger carries it."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "plainsecretvalue42")
    lines = json_logs()
    structlog.get_logger("agentkeep.runtime").info("key is plainsecretvalue42")
    logging.getLogger("some.library").warning("retrying with key=%s", "plainsecretvalue42")
    assert [line["event"] for line in lines()] == [f"key is {REDACTED}", f"retrying with key={REDACTED}"]


@pytest.mark.parametrize(("level", "shown"), [("info", False), ("debug", True)])
def test_the_log_level_setting_filters_debug_events(
    json_logs: Callable[..., LogLines], level: str, shown: bool
) -> None:
    """AGENTKEEP_LOG_LEVEL=info hides debug events (and their text); debug shows them."""
    lines = json_logs(log_level=level)
    structlog.get_logger("agentkeep.runtime").debug("model.text", prompt="hello")
    events: list[dict[str, Any]] = lines()
    assert bool(events) is shown
    if shown:
        assert events[0]["prompt"] == "hello"


def test_console_format_renders_one_readable_line(json_logs: Callable[..., LogLines]) -> None:
    """AGENTKEEP_LOG_FORMAT=console is for a person at a terminal: not JSON, still redacted."""
    json_logs(log_format="console")
    structlog.get_logger("agentkeep.runtime").info("run.started", key=CANARY)
    logging.getLogger("uvicorn.error").info("Started server process")
    text = sys.stdout.getvalue()  # type: ignore[attr-defined]  # the fixture's buffer
    assert "run.started" in text and "Started server process" in text
    assert not text.startswith("{") and CANARY not in text
