"""Pydantic AI messages in the contract's simple form: `{"role", "content", ...}` per turn.

A user turn of parts shows its text as `content` and each file as `{"type", "media_type", "url"?}`
in `parts`: described, never echoed (an inline file's bytes stay in the stored messages).
"""

from __future__ import annotations

from typing import Any

from pydantic_ai.messages import (
    AudioUrl,
    BinaryContent,
    DocumentUrl,
    FileUrl,
    ImageUrl,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

__all__ = ["load_chunks", "simple_messages"]


def load_chunks(chunks: list[bytes]) -> list[ModelMessage]:
    messages: list[ModelMessage] = []
    for chunk in chunks:
        messages.extend(ModelMessagesTypeAdapter.validate_json(chunk))
    return messages


def simple_messages(messages: list[ModelMessage]) -> list[dict[str, Any]]:
    """User prompts, assistant answers (with their tool calls) and tool results, in order."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, ModelRequest):
            out.extend(_request_parts(message))
        elif isinstance(message, ModelResponse):
            turn = _response_turn(message)
            if turn is not None:
                out.append(turn)
    return out


def _request_parts(message: ModelRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, UserPromptPart):
            content = part.content if isinstance(part.content, str) else _text_of(part.content)
            turn: dict[str, Any] = {"role": "user", "content": content, "timestamp": part.timestamp.isoformat()}
            files = [] if isinstance(part.content, str) else [_file(item) for item in part.content]
            if any(files):
                turn["parts"] = [file for file in files if file is not None]
            out.append(turn)
        elif isinstance(part, ToolReturnPart):
            out.append({"role": "tool", "content": part.model_response_str(), "name": part.tool_name})
    return out


def _response_turn(message: ModelResponse) -> dict[str, Any] | None:
    text = "".join(p.content for p in message.parts if isinstance(p, TextPart))
    calls = [{"name": p.tool_name, "args": p.args_as_dict()} for p in message.parts if isinstance(p, ToolCallPart)]
    if not text and not calls:
        return None
    turn: dict[str, Any] = {"role": "assistant", "content": text, "timestamp": message.timestamp.isoformat()}
    if calls:
        turn["tool_calls"] = calls
    return turn


def _text_of(content: Any) -> str:
    return " ".join(item for item in content if isinstance(item, str))


_URL_TYPES: tuple[tuple[type[FileUrl], str], ...] = (
    (ImageUrl, "image_url"),
    (DocumentUrl, "document_url"),
    (AudioUrl, "audio_url"),
)


def _file(item: Any) -> dict[str, Any] | None:
    """A file of a prompt as the API describes it; None for text (and anything else)."""
    if isinstance(item, BinaryContent):
        return {"type": "binary", "media_type": item.media_type}
    if isinstance(item, FileUrl):
        kind = next((name for cls, name in _URL_TYPES if isinstance(item, cls)), "file_url")
        try:
            media_type: str | None = item.media_type
        except ValueError:  # a URL stored without one, whose name does not say it
            media_type = None
        return {"type": kind, "media_type": media_type, "url": item.url}
    return None
