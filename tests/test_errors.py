"""The error tree is the one status→type table: a bare status, and a middleware's refusal, read it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentkeep.errors import PayloadTooLarge, RateLimited, send_envelope, type_for_status


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request"),
        (401, "unauthorized"),
        (404, "not_found"),
        (405, "method_not_allowed"),
        (413, "payload_too_large"),
        (422, "validation_error"),
        (429, "rate_limited"),
        (503, "overloaded"),
        (402, "invalid_request"),  # two errors have 402 (budget_exceeded, price_unknown): a bare 402 names neither
        (418, "invalid_request"),
        (500, "internal_error"),
        (502, "internal_error"),
    ],
)
def test_a_bare_status_gets_the_type_the_error_tree_declares(status: int, error_type: str) -> None:
    """What the server's table used to say, now read off the classes: a framework 404 is `not_found`,
    a status without an error of its own is `invalid_request` below 500 and `internal_error` from it."""
    assert type_for_status(status) == error_type


class _Sent:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


async def test_a_middleware_refusal_answers_with_the_errors_status_body_and_retry_after() -> None:
    """`send_envelope` takes the error itself: its status, its envelope, its Retry-After before the
    caller's own headers, and a Content-Length that matches the body."""
    send = _Sent()
    extra = [(b"ratelimit-limit", b"5")]
    await send_envelope(send, RateLimited("rate limit of 5 per 1 minute exceeded", retry_after=7), extra)
    start, body = send.messages
    assert start["type"] == "http.response.start" and start["status"] == 429
    assert start["headers"] == [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body["body"])).encode()),
        (b"retry-after", b"7"),
        (b"ratelimit-limit", b"5"),
    ]
    assert json.loads(body["body"]) == {
        "error": {"type": "rate_limited", "message": "rate limit of 5 per 1 minute exceeded"}
    }


async def test_an_error_without_retry_after_sends_no_retry_after() -> None:
    """A 413 carries no Retry-After: only the content headers go out."""
    send = _Sent()
    await send_envelope(send, PayloadTooLarge("request body is over the 10-byte limit"))
    start, body = send.messages
    assert start["status"] == 413
    assert [name for name, _ in start["headers"]] == [b"content-type", b"content-length"]
    assert json.loads(body["body"])["error"]["type"] == "payload_too_large"
