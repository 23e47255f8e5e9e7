"""A scripted OpenAI-compatible model server for end-to-end tests and benchmarks.

In-process::
    with MockLLM([Reply.tool_call("add", {"a": 1}), Reply.text("done")]) as mock:
        ...  # point a client at mock.base_url ("http://127.0.0.1:PORT/v1"), then assert on mock.request_count

As a separate process (first stdout line is the base URL; script it and read counters over `/_mock/*`)::
    python -m agentkeep.testing.mock_llm --port 0 --script replies.json

It speaks `POST /v1/chat/completions`, streamed or not; each request takes the next scripted reply, or the
default. One asyncio thread serves every connection (a thread per connection collapsed on GIL hand-offs under
concurrency). It imports nothing else from agentkeep, so it cannot drift with the code under test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter, deque
from collections.abc import Iterable
from pathlib import Path
from types import FrameType
from typing import Any, Self, cast

from agentkeep.testing import _mock_llm_replies as wire
from agentkeep.testing._mock_llm_replies import Reply, ReplyKind, ToolCall

__all__ = ["MockLLM", "MockLLMControl", "MockLLMProcess", "Reply", "ReplyKind", "ToolCall"]

JSON = dict[str, Any]
DEFAULT_REPLY = Reply.text("This is a mock reply.")
_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_MODELS = {"object": "list", "data": [{"id": "mock", "object": "model", "owned_by": "mock"}]}


class MockLLM:
    """A scripted OpenAI chat-completions server on 127.0.0.1, served from a background thread.

    Thread-safe: replies may be scripted and counters read from any thread while requests are in flight.
    """

    def __init__(
        self, replies: Iterable[Reply | str] = (), *, default: Reply | str = DEFAULT_REPLY,
        host: str = "127.0.0.1", port: int = 0, max_logged: int = 1000,
    ) -> None:  # fmt: skip
        self._host, self._port = host, port
        self._initial_default = _as_reply(default)
        # Guards the script and the counters, which the server thread and the test's threads share.
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque(_as_reply(r) for r in replies)
        self._default = self._initial_default
        self._count = 0
        self._by_model: Counter[str] = Counter()
        self._log: deque[JSON] = deque(maxlen=max_logged)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> Self:
        """Bind and start serving; idempotent. Returns self so `MockLLM().start()` chains."""
        if self._thread is None:
            ready = threading.Event()
            errors: list[BaseException] = []
            self._thread = threading.Thread(target=self._run, args=(ready, errors), name="mock-llm", daemon=True)
            self._thread.start()
            ready.wait()
            if errors:  # e.g. the port is taken: raise it here, in the caller's thread
                self._thread.join()
                self._thread = None
                raise errors[0]
        return self

    def close(self) -> None:
        """Stop serving, cut open connections (and scripted sleeps) and free the port; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, ready: threading.Event, errors: list[BaseException]) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as e:  # reported to start(); the thread has nobody else to tell
            errors.append(e)
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._connection, self._host, self._port)
        self._port = int(server.sockets[0].getsockname()[1])
        ready.set()
        await self._stop.wait()
        server.close()
        # Idle keep-alive connections and scripted sleeps would otherwise hold shutdown hostage.
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()
        await asyncio.sleep(0)  # let the transports' close callbacks run, so no socket outlives the loop

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when constructed with `port=0`)."""
        if self._thread is None:
            raise RuntimeError("MockLLM is not running; use `with MockLLM() as mock:` or call start()")
        return self._port

    @property
    def url(self) -> str:
        """The server root, where the `/_mock/*` control API lives."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to hand to clients (`OPENAI_BASE_URL`)."""
        return f"{self.url}/v1"

    def enqueue(self, *replies: Reply | str) -> None:
        """Append replies to the queue; each request consumes one, in order."""
        with self._lock:
            self._queue.extend(_as_reply(r) for r in replies)

    def set_default(self, reply: Reply | str) -> None:
        """The reply served whenever the queue is empty (a `Reply.rule` works for many runs)."""
        with self._lock:
            self._default = _as_reply(reply)

    def reset(self) -> None:
        """Empty the queue, zero the counters and the request log, and restore the initial default."""
        with self._lock:
            self._queue.clear()
            self._default = self._initial_default
            self._count = 0
            self._by_model.clear()
            self._log.clear()

    @property
    def request_count(self) -> int:
        """Chat-completion requests received, including those answered with an error or a drop."""
        with self._lock:
            return self._count

    @property
    def requests_by_model(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_model)

    @property
    def requests(self) -> list[JSON]:
        """The most recent request bodies (bounded by `max_logged`), oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def stats(self) -> JSON:
        """The counters as served by `GET /_mock/stats`."""
        with self._lock:
            return {
                "requests": self._count,
                "by_model": dict(self._by_model),
                "queued": len(self._queue),
                "default": self._default.to_json(),
            }

    def _next_reply(self, body: JSON) -> Reply:
        with self._lock:
            self._count += 1
            self._by_model[str(body.get("model"))] += 1
            self._log.append(body)
            reply = self._queue.popleft() if self._queue else self._default
        return reply.resolve(body.get("messages"))

    def _control(self, method: str, path: str, body: Any) -> JSON | None:
        """The `/_mock/*` API; None for an unknown route."""
        if (method, path) == ("GET", "/_mock/stats"):
            return self.stats()
        if (method, path) == ("GET", "/_mock/requests"):
            return {"requests": self.requests}
        if (method, path) == ("POST", "/_mock/reset"):
            self.reset()
            return self.stats()
        if (method, path) == ("POST", "/_mock/script"):
            replies, default = wire.parse_script(body)
            with self._lock:  # one critical section: a concurrent request sees the old script or the new
                if isinstance(body, dict) and body.get("clear"):
                    self._queue.clear()
                self._queue.extend(replies)
                self._default = default or self._default
            return self.stats()
        return None

    # -- HTTP --------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client hung up or sent something that is not HTTP: nobody to answer
        except asyncio.CancelledError:
            pass  # close() ends us; 3.11's start_server callback logs an error for a task that ends cancelled
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection must close afterwards."""
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if "chunked" in headers.get("transfer-encoding", ""):  # no client we serve sends one
            writer.write(wire.http_error(411, "send a Content-Length"))
            return False
        raw = await reader.readexactly(int(headers.get("content-length") or 0))
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        path = target.split("?", 1)[0]
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            writer.write(wire.http_error(400, "request body is not valid JSON"))
        else:
            if method == "POST" and path in _CHAT_PATHS and isinstance(body, dict):
                keep_alive = await self._chat(body, writer) and keep_alive
            elif method == "GET" and path in ("/v1/models", "/models"):
                writer.write(wire.http_response(200, _MODELS))
            else:
                self._dispatch_control(method, path, body, writer)
        await writer.drain()
        return keep_alive

    def _dispatch_control(self, method: str, path: str, body: Any, writer: asyncio.StreamWriter) -> None:
        try:
            result = self._control(method, path, body)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            writer.write(wire.http_error(400, f"bad request: {e!r}"))
            return
        if result is None:
            writer.write(wire.http_error(404, f"no route {method} {path}"))
        else:
            writer.write(wire.http_response(200, result))

    async def _chat(self, body: JSON, writer: asyncio.StreamWriter) -> bool:
        reply = self._next_reply(body)
        if reply.latency:
            await asyncio.sleep(reply.latency)
        if reply.kind == "drop":
            return False  # the connection closes with nothing sent, like a crashed upstream
        if reply.kind == "error":
            retry = {"Retry-After": f"{reply.retry_after:g}"} if reply.retry_after is not None else {}
            writer.write(wire.http_response(reply.status, wire.render_error(reply), retry))
        elif body.get("stream"):
            await _write_stream(writer, reply, body)
        else:
            writer.write(wire.http_response(200, wire.render_completion(reply, body)))
        return True


def _as_reply(reply: Reply | str) -> Reply:
    return Reply.text(reply) if isinstance(reply, str) else reply


async def _write_stream(writer: asyncio.StreamWriter, reply: Reply, body: JSON) -> None:
    frames = wire.sse_frames(reply, body)
    if not reply.chunk_delay:  # one write: the client's SSE parser sees the same events, much sooner
        writer.write(wire.STREAM_HEAD + b"".join(frames) + wire.STREAM_END)
        return
    writer.write(wire.STREAM_HEAD)
    for i, frame in enumerate(frames):
        if i:
            await asyncio.sleep(reply.chunk_delay)
        writer.write(frame)
        await writer.drain()
    writer.write(wire.STREAM_END)


class MockLLMControl:
    """A client for the `/_mock/*` control API of a mock in another process (standard library only)."""

    def __init__(self, url: str) -> None:
        """`url` is the server root or its base URL; a trailing `/v1` is ignored."""
        self.url = url.rstrip("/").removesuffix("/v1")

    def _call(self, method: str, path: str, body: Any = None) -> JSON:
        data = None if body is None else wire.dumps(body)
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 (http only)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return cast(JSON, json.loads(response.read()))

    def stats(self) -> JSON:
        """`{"requests", "by_model", "queued", "default"}`."""
        return self._call("GET", "/_mock/stats")

    def requests(self) -> list[JSON]:
        return cast(list[JSON], self._call("GET", "/_mock/requests")["requests"])

    def script(self, *replies: Reply | str, default: Reply | str | None = None, clear: bool = False) -> JSON:
        """Append `replies` to the queue (after emptying it if `clear`), and set the default if given."""
        body: JSON = {"replies": [_as_reply(r).to_json() for r in replies], "clear": clear}
        if default is not None:
            body["default"] = _as_reply(default).to_json()
        return self._call("POST", "/_mock/script", body)

    def reset(self) -> JSON:
        return self._call("POST", "/_mock/reset", {})


class MockLLMProcess:
    """Runs the mock as `python -m agentkeep.testing.mock_llm` in a child process, e.g. for benchmarks.

    `base_url` and `control` are available inside the `with` block; exiting terminates the child.
    """

    def __init__(self, script: Path | str | None = None, *, port: int = 0) -> None:
        self._args = [sys.executable, "-m", "agentkeep.testing.mock_llm", "--port", str(port)]
        self._args += ["--script", str(script)] if script is not None else []
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> Self:
        # The child must import this very agentkeep, installed or not (e.g. a src checkout on sys.path).
        src = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True, env=env)
        assert self._proc.stdout is not None
        self.base_url = self._proc.stdout.readline().strip()
        if not self.base_url.startswith("http://"):
            self.__exit__(None, None, None)
            raise RuntimeError(f"mock LLM process failed to start (printed {self.base_url!r})")
        self.control = MockLLMControl(self.base_url)
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: serve until SIGTERM/SIGINT, printing the base URL as the first stdout line."""
    parser = argparse.ArgumentParser(
        prog="python -m agentkeep.testing.mock_llm", description="Scripted OpenAI-compatible mock server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--script", type=Path, help="JSON file: a list of replies or {replies, default}")
    parser.add_argument("--max-logged", type=int, default=1000, help="request bodies kept for /_mock/requests")
    args = parser.parse_args(argv)
    replies, default = wire.parse_script(json.loads(args.script.read_text()) if args.script else [])
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    mock = MockLLM(
        replies, default=default or DEFAULT_REPLY, host=args.host, port=args.port, max_logged=args.max_logged
    )
    with mock:
        print(mock.base_url, flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
