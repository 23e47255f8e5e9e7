"""Scripted replies for the mock OpenAI-compatible server: the `Reply` API, its JSON form, and the bytes
each reply puts on the wire (OpenAI's JSON shapes, HTTP/1.1 framing, server-sent events).

Kept apart from the server so replies can be built, serialised and rendered without sockets, and so
`mock_llm.py` is only about connections, timing and state. Standard library only, on purpose: the mock
must start in any environment the tests or benchmarks run in.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Literal

__all__ = [
    "STREAM_END",
    "STREAM_HEAD",
    "Reply",
    "ReplyKind",
    "ToolCall",
    "dumps",
    "http_error",
    "http_response",
    "parse_script",
    "render_chunks",
    "render_completion",
    "render_error",
    "sse_frames",
]

ReplyKind = Literal["text", "tool_calls", "error", "drop", "rule"]
JSON = dict[str, Any]

# OpenAI's `error.type` per status; anything 5xx is a `server_error`.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_COMMON_KEYS = {"latency", "chunk_delay", "usage", "chunks"}


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asks for. `id=None` gets a fresh `call_...` id per response."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """What the mock answers to one chat-completions request. Build with the classmethods, not directly."""

    kind: ReplyKind
    content: str | None = None
    calls: tuple[ToolCall, ...] = ()
    chunks: int = 1
    status: int = 200
    message: str | None = None
    retry_after: float | None = None
    latency: float = 0.0
    chunk_delay: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    after_tool: Reply | None = None
    otherwise: Reply | None = None

    @classmethod
    def text(cls, content: str, *, chunks: int = 1) -> Reply:
        """A plain answer; when streamed, split into `chunks` roughly equal deltas."""
        return cls("text", content=content, chunks=max(1, chunks))

    @classmethod
    def tool_call(cls, name: str, args: Mapping[str, Any] | None = None, *, id: str | None = None) -> Reply:
        """A single function call (`finish_reason="tool_calls"`)."""
        return cls.tool_calls(ToolCall(name, dict(args or {}), id))

    @classmethod
    def tool_calls(cls, *calls: ToolCall, text: str | None = None, chunks: int = 2) -> Reply:
        """Several calls in one response; streamed arguments arrive in `chunks` fragments per call."""
        if not calls:
            raise ValueError("tool_calls needs at least one ToolCall")
        return cls("tool_calls", content=text, calls=tuple(calls), chunks=max(1, chunks))

    @classmethod
    def error(cls, status: int, message: str | None = None, *, retry_after: float | None = None) -> Reply:
        """An HTTP error in OpenAI's error shape, optionally with a `Retry-After` header (seconds)."""
        if not 400 <= status <= 599:
            raise ValueError(f"error status must be 4xx or 5xx, got {status}")
        return cls("error", status=status, message=message, retry_after=retry_after)

    @classmethod
    def drop(cls) -> Reply:
        """Close the connection without sending any response bytes."""
        return cls("drop")

    @classmethod
    def rule(cls, *, after_tool: Reply, otherwise: Reply) -> Reply:
        """Pick `after_tool` when the request's last message is a tool result, else `otherwise`."""
        return cls("rule", after_tool=after_tool, otherwise=otherwise)

    @classmethod
    def call_then_answer(cls, name: str, args: Mapping[str, Any] | None, answer: str) -> Reply:
        """The benchmark default: call tool `name` first, answer `answer` once its result comes back."""
        return cls.rule(after_tool=cls.text(answer), otherwise=cls.tool_call(name, args))

    def with_latency(self, seconds: float, *, chunk_delay: float = 0.0) -> Reply:
        """Sleep `seconds` before answering and `chunk_delay` between stream chunks."""
        if self.kind == "rule":  # a rule has no answer of its own: delay whichever branch is taken
            after_tool, otherwise = self._branches()
            return replace(
                self,
                after_tool=after_tool.with_latency(seconds, chunk_delay=chunk_delay),
                otherwise=otherwise.with_latency(seconds, chunk_delay=chunk_delay),
            )
        return replace(self, latency=seconds, chunk_delay=chunk_delay)

    def with_usage(self, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> Reply:
        """Report these token counts instead of the length-derived estimate."""
        return replace(self, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def resolve(self, messages: Any) -> Reply:
        """The concrete reply for a request with these `messages` (only rules depend on them)."""
        if self.kind != "rule":
            return self
        after_tool, otherwise = self._branches()
        last = messages[-1] if isinstance(messages, list) and messages else None
        is_tool_result = isinstance(last, dict) and last.get("role") == "tool"
        return (after_tool if is_tool_result else otherwise).resolve(messages)

    def _branches(self) -> tuple[Reply, Reply]:
        if self.after_tool is None or self.otherwise is None:
            raise ValueError(f"not a rule: {self!r}")
        return self.after_tool, self.otherwise

    def to_json(self) -> JSON:
        """The JSON form accepted by `from_json`, the CLI `--script` file and `POST /_mock/script`."""
        out: JSON
        if self.kind == "rule":
            after_tool, otherwise = self._branches()
            return {"rule": {"after_tool": after_tool.to_json(), "otherwise": otherwise.to_json()}}
        if self.kind == "text":
            out = {"text": self.content, "chunks": self.chunks}
        elif self.kind == "tool_calls":
            calls = [{"name": c.name, "args": dict(c.args), **({"id": c.id} if c.id else {})} for c in self.calls]
            out = {"tool_calls": calls, "chunks": self.chunks}
            if self.content is not None:
                out["text"] = self.content
        elif self.kind == "error":
            out = {"error": self.status, "message": self.message, "retry_after": self.retry_after}
        else:
            out = {"drop": True}
        if self.latency or self.chunk_delay:
            out.update(latency=self.latency, chunk_delay=self.chunk_delay)
        if self.prompt_tokens is not None or self.completion_tokens is not None:
            out["usage"] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}
        return out

    @classmethod
    def from_json(cls, data: Any) -> Reply:
        """Parse the JSON form; a bare string is a text reply. Raises `ValueError` on anything malformed."""
        if isinstance(data, str):
            return cls.text(data)
        if not isinstance(data, dict):
            raise ValueError(f"a reply must be a string or an object, got {data!r}")
        if "rule" in data:
            rule = data["rule"]
            if set(data) != {"rule"} or not isinstance(rule, dict) or set(rule) != {"after_tool", "otherwise"}:
                raise ValueError(f'a rule is {{"rule": {{"after_tool": ..., "otherwise": ...}}}}, got {data!r}')
            return cls.rule(after_tool=cls.from_json(rule["after_tool"]), otherwise=cls.from_json(rule["otherwise"]))
        reply = cls._from_json_kind(data)
        if data.get("latency") or data.get("chunk_delay"):
            reply = reply.with_latency(float(data.get("latency", 0)), chunk_delay=float(data.get("chunk_delay", 0)))
        if usage := data.get("usage"):
            reply = reply.with_usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))
        return reply

    @classmethod
    def _from_json_kind(cls, data: JSON) -> Reply:
        # Unknown keys are rejected rather than ignored: a typo in a script should fail the test loudly.
        def check(*allowed: str) -> None:
            if extra := set(data) - set(allowed) - _COMMON_KEYS:
                raise ValueError(f"unknown reply keys {sorted(extra)} in {data!r}")

        if "error" in data:
            check("error", "message", "retry_after")
            return cls.error(int(data["error"]), data.get("message"), retry_after=data.get("retry_after"))
        if "drop" in data:
            check("drop")
            return cls.drop()
        if "tool_calls" in data:
            check("tool_calls", "text")
            calls = [ToolCall(c["name"], c.get("args", {}), c.get("id")) for c in data["tool_calls"]]
            return cls.tool_calls(*calls, text=data.get("text"), chunks=int(data.get("chunks", 2)))
        if "text" in data:
            check("text")
            return cls.text(str(data["text"]), chunks=int(data.get("chunks", 1)))
        raise ValueError(f"a reply needs one of text, tool_calls, error, drop or rule: {data!r}")


def parse_script(data: Any) -> tuple[list[Reply], Reply | None]:
    """A script (CLI file or `POST /_mock/script`): a list of replies, or `{"replies": [...], "default": ...}`."""
    data = data if isinstance(data, dict) else {"replies": data}
    replies = [Reply.from_json(r) for r in data.get("replies") or []]
    default = data.get("default")
    return replies, None if default is None else Reply.from_json(default)


def _tokens(chars: int) -> int:
    # The usual rule of thumb, ~4 characters a token: deterministic, and enough for budget/usage tests.
    return max(1, math.ceil(chars / 4))


def _prompt_chars(messages: Any) -> int:
    total = 0
    for msg in messages if isinstance(messages, list) else ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    return total


def _usage(reply: Reply, body: JSON) -> JSON:
    completion_chars = len(reply.content or "") + sum(len(json.dumps(c.args)) for c in reply.calls)
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else _tokens(_prompt_chars(body.get("messages")))
    completion = reply.completion_tokens if reply.completion_tokens is not None else _tokens(completion_chars)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _wire_calls(reply: Reply) -> list[JSON]:
    return [
        {
            "id": c.id or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.args)},
        }
        for c in reply.calls
    ]


def _split(text: str, parts: int) -> list[str]:
    # Exactly `parts` pieces (fewer only if the text is shorter), so tests can count the deltas.
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    bounds = [k * size + min(k, extra) for k in range(parts + 1)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def _envelope(body: JSON, kind: str) -> JSON:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": kind,
        "created": int(time.time()),
        "model": body.get("model") or "mock",
        "system_fingerprint": "fp_mock",
    }


def render_completion(reply: Reply, body: JSON) -> JSON:
    """A non-streaming `chat.completion` for a text or tool-calls reply."""
    message: JSON = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.kind == "tool_calls":
        message["tool_calls"] = _wire_calls(reply)
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(reply)}
    return {**_envelope(body, "chat.completion"), "choices": [choice], "usage": _usage(reply, body)}


def render_chunks(reply: Reply, body: JSON) -> Iterator[JSON]:
    """The `chat.completion.chunk` objects of a streamed reply, shaped like the real API's.

    A role delta first, then content deltas or, per tool call, one delta with index/id/name and empty
    arguments followed by argument fragments; then the finish reason; then, when the request set
    `stream_options.include_usage`, a last chunk with empty `choices` and the usage (and `usage: null`
    on every chunk before it).
    """
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = _envelope(body, "chat.completion.chunk")
    if include_usage:
        base["usage"] = None

    def chunk(delta: JSON, finish_reason: str | None = None) -> JSON:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    if reply.content or reply.kind == "text":
        for piece in _split(reply.content or "", reply.chunks):
            yield chunk({"content": piece})
    for index, call in enumerate(_wire_calls(reply)):
        fn = call["function"]
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": fn["name"], "arguments": ""},
        }
        yield chunk({"tool_calls": [head]})
        for piece in _split(fn["arguments"], reply.chunks):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, _finish_reason(reply))
    if include_usage:
        yield {**base, "choices": [], "usage": _usage(reply, body)}


def render_error(reply: Reply) -> JSON:
    """OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`."""
    kind = _ERROR_TYPES.get(reply.status, "server_error" if reply.status >= 500 else "invalid_request_error")
    message = reply.message or f"mock error {reply.status}"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.kind == "tool_calls" else "stop"


# -- HTTP/1.1 framing ----------------------------------------------------------------------------------


def dumps(data: Any) -> bytes:
    """Compact JSON: less to write and to parse on the benchmark's hot path."""
    return json.dumps(data, separators=(",", ":")).encode()


def _head(status: int, headers: Mapping[str, str]) -> bytes:
    # Hand-built: no Date/Server headers to format on every request.
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> bytes:
    """A whole JSON response in one buffer: one write per response, so never a delayed-ACK stall."""
    body = dumps(data)
    return (
        _head(status, {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}) + body
    )


def http_error(status: int, message: str) -> bytes:
    return http_response(status, render_error(Reply.error(status, message)))


STREAM_HEAD = _head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"})
STREAM_END = b"0\r\n\r\n"


def sse_frames(reply: Reply, body: JSON) -> list[bytes]:
    """Each server-sent event of a streamed reply, `[DONE]` last, as a chunk of a chunked HTTP body."""
    events = [b"data: " + dumps(c) + b"\n\n" for c in render_chunks(reply, body)] + [b"data: [DONE]\n\n"]
    return [b"%x\r\n%s\r\n" % (len(e), e) for e in events]
