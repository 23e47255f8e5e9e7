"""An upper bound of the input tokens of a model request, from the bytes of what is sent.

Byte-level BPE tokenizers (OpenAI, Anthropic, Llama, Gemini's SentencePiece with byte fallback)
never make a token out of less than one byte, so the UTF-8 size of the text bounds its tokens. The
JSON form of each message is larger still (keys, quotes, escapes, timestamps), which leaves room
for what providers add around messages; a fixed allowance per message and per request covers the
chat template, and each image, audio or document part gets a flat `MEDIA_TOKENS`, above what the
major providers charge for one item (an image's tokens follow its pixels, not its bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, UserPromptPart
from pydantic_ai.models import ModelRequestParameters
from pydantic_core import to_json

__all__ = ["MEDIA_TOKENS", "InputBound"]

PER_MESSAGE_TOKENS = 16
PER_REQUEST_TOKENS = 256
MEDIA_TOKENS = 4096


@dataclass
class InputBound:
    """Sizes the messages of one run; a message's size is measured once however often it is resent."""

    _sizes: dict[int, tuple[ModelMessage, int]] = field(default_factory=dict)

    def tokens(self, messages: Sequence[ModelMessage], params: ModelRequestParameters | None) -> int:
        """The most input tokens a request sending `messages` with `params` (tools, instructions) can bill."""
        total = PER_REQUEST_TOKENS + _params_bytes(params)
        for message in messages:
            total += self._size(message) + PER_MESSAGE_TOKENS
        return total

    def _size(self, message: ModelMessage) -> int:
        cached = self._sizes.get(id(message))
        # The message itself is kept in the cache, so its id cannot be reused by another object.
        if cached is not None and cached[0] is message:
            return cached[1]
        # pydantic_core.to_json is ~9x faster than the messages TypeAdapter, for the same bytes.
        size = len(to_json(message, fallback=str, bytes_mode="base64")) + MEDIA_TOKENS * _media_parts(message)
        self._sizes[id(message)] = (message, size)
        return size


def _media_parts(message: ModelMessage) -> int:
    if not isinstance(message, ModelRequest):
        return 0
    count = 0
    for part in message.parts:
        if isinstance(part, UserPromptPart) and not isinstance(part.content, str):
            count += sum(1 for item in part.content if not isinstance(item, str))
    return count


def _params_bytes(params: ModelRequestParameters | None) -> int:
    if params is None:
        return 0
    parts: list[Any] = [
        [(t.name, t.description, t.parameters_json_schema) for t in params.function_tools],
        [(t.name, t.description, t.parameters_json_schema) for t in params.output_tools],
        getattr(params, "instruction_parts", None),
        getattr(params.output_object, "json_schema", None),
        params.prompted_output_template,
        # A native tool's (web search, code execution) definition is small; it is the tool's own
        # results that cost, and the provider reports those in the output.
        [repr(t) for t in params.native_tools],
    ]
    return len(to_json(parts, fallback=str))
