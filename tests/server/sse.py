"""Reading a `text/event-stream` answer of `agentkeep serve` in tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

Event = tuple[str, dict[str, Any]]


def parse(text: str) -> list[Event]:
    """The (name, data) of each event, in order."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def post(client: httpx.Client, path: str, body: dict[str, Any], **kwargs: Any) -> list[Event]:
    """POST `body` with `stream: true` and read the whole event stream."""
    with client.stream("POST", path, json={**body, "stream": True}, **kwargs) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse("".join(response.iter_text()))


def names(events: list[Event]) -> list[str]:
    return [name for name, _ in events]


def data_of(events: list[Event], name: str) -> list[dict[str, Any]]:
    return [data for event, data in events if event == name]
