"""Schemathesis hooks for `test_schemathesis_e2e.py` (loaded through SCHEMATHESIS_HOOKS).

`error_envelope` is the contract's rule for every error: `{"error": {"type", "message"}}` as JSON,
one line, no stack trace. Generated bodies lose their `webhook_url`, so no run tries to reach a
host the fuzzer made up: tests talk to 127.0.0.1 only.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is the contract's JSON envelope, with a one-line message."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"HTTP {response.status_code} with a body that is not JSON: {response.text[:200]!r}"
        ) from None
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], dict)):
        raise AssertionError(f"HTTP {response.status_code} outside the error envelope: {body!r}")
    error = body["error"]
    if set(error) != {"type", "message"} or not all(isinstance(error[k], str) and error[k] for k in error):
        raise AssertionError(f"error must have a non-empty string type and message: {error!r}")
    if "\n" in error["message"] or "Traceback" in error["message"]:
        raise AssertionError(f"error message is not one clean line: {error['message']!r}")
    return True


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    """Drop any `webhook_url`: a background run would POST to it, and tests reach only 127.0.0.1."""
    if isinstance(body, dict):
        body.pop("webhook_url", None)
    return body
