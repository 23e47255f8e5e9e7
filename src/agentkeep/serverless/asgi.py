"""The smallest ASGI server there is: the app's lifespan, started once, and one request at a time,
answered whole.

Lambda hands the function one request and wants one complete response back, so there is no
socket, no keep-alive and no streaming to the caller: a streamed run (`text/event-stream`) is
collected until the app ends its body, and the caller receives every event at once. Written here
rather than taken from Mangum: the translation is ~100 lines we can test against AWS's event
shapes, Mangum would add a dependency whose lifespan handling runs startup and shutdown around
every invocation unless configured, and the response shapes must match the contract's
`Set-Cookie` and base64 rules, which `events.py` owns.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from starlette.types import ASGIApp, Message

from agentkeep.errors import envelope
from agentkeep.serverless.events import HTTPRequest, HTTPResponse

__all__ = ["Lifespan", "call_app"]

log = structlog.get_logger("agentkeep.serverless")

_FAILED_STARTUP_WAIT_S = 5.0


class Lifespan:
    """Runs the app's ASGI lifespan: `start()` once per container. Lambda never asks for the
    shutdown (it freezes the container, then discards it); `stop()` runs when an interpreter exits
    on its own (container.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._started = asyncio.Event()
        self._stopped = asyncio.Event()
        self._failure: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run the app's startup; raise the app's own error if it fails."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": self.state}
        self._task = asyncio.ensure_future(self.app(scope, self._inbox.get, self._send))
        await self._inbox.put({"type": "lifespan.startup"})
        started = asyncio.ensure_future(self._started.wait())
        done, _ = await asyncio.wait({self._task, started}, return_when="FIRST_COMPLETED")
        started.cancel()
        if self._failure is None and self._task not in done:
            return
        # The app reports a failed startup, then raises its error: raise that, not the report's traceback.
        await asyncio.wait({self._task}, timeout=_FAILED_STARTUP_WAIT_S)
        if self._task.done() and not self._task.cancelled() and (exc := self._task.exception()) is not None:
            raise exc
        lines = (self._failure or "").strip().splitlines() or ["the app stopped during startup"]
        raise RuntimeError(lines[-1])

    async def stop(self) -> None:
        """Run the app's shutdown (drain, close the database)."""
        if self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._stopped.wait()
        await self._task

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._started.set()
        elif kind == "lifespan.startup.failed":
            self._failure = str(message.get("message") or "startup failed")
            self._started.set()
        elif kind in {"lifespan.shutdown.complete", "lifespan.shutdown.failed"}:
            self._stopped.set()


async def call_app(app: ASGIApp, request: HTTPRequest, state: dict[str, Any] | None = None) -> HTTPResponse:
    """Send `request` through `app` and collect its whole response."""
    scope = request.asgi_scope()
    scope["state"] = dict(state or {})  # what the lifespan left for requests, as a server passes it
    response = HTTPResponse(status=500)
    chunks: list[bytes] = []
    sent_body = False
    finished = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        # The client of a Lambda invocation never goes away mid-response: a streamed run that
        # listens for a disconnect keeps running until its body is complete.
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            response.status = int(message["status"])
            response.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send)
    except Exception as exc:
        # The app answers its own errors in the envelope; what escapes it is a bug in agentkeep.
        # A response already started (its error middleware answered 500) is sent as it is.
        log.error("serverless.unhandled", exc_info=exc)
        if not chunks and not response.headers:
            return _internal_error()
    finally:
        finished.set()
    response.body = b"".join(chunks)
    return response


def _internal_error() -> HTTPResponse:
    body = json.dumps(envelope("internal_error", "the request failed unexpectedly; retry, or report it")).encode()
    return HTTPResponse(500, [(b"content-type", b"application/json")], body)
