"""A run's message as parts: text, media by URL, media inline; checked, then given to Pydantic AI.

    {"type": "text", "text": "What is in this picture?"}
    {"type": "image_url" | "document_url" | "audio_url", "url": "https://…", "media_type"?: "image/png"}
    {"type": "binary", "media_type": "image/png", "data": "<base64>"}

`MessageReader.read()` checks a message, text or a list of parts, before the run is recorded (each
failure is one line: 400 `invalid_request`, or 413 `payload_too_large` for size) and returns its
text and its parts as stored with the run; `user_content()` turns stored parts into Pydantic AI's
prompt (`ImageUrl`, `DocumentUrl`, `AudioUrl`, `BinaryContent`).

    text      cleaned and length-checked as a plain message is (AGENTKEEP_MAX_MESSAGE_CHARS, all
              text parts together)
    binary    valid base64 of a `MEDIA_TYPES` type; all of them together decode to at most
              AGENTKEEP_MAX_BODY_BYTES
    URL       http(s), refused as `fetch_url` would refuse it (`tools.fetch.Fetcher.refusal`:
              loopback, private, link-local, metadata addresses, the host lists and ports);
              its media type given, or inferred from the URL's extension, and in `MEDIA_TYPES`

Who fetches a URL depends on the provider: some send it on (OpenAI's images), others make Pydantic
AI download it (OpenAI Chat's documents and audio, Gemini, Bedrock), through its own SSRF guard;
agentkeep never sets `force_download`, its one bypass. The check here refuses an inward address
before anyone fetches anything.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_ai import AudioUrl, BinaryContent, DocumentUrl, ImageUrl
from pydantic_ai.messages import UserContent

from agentkeep.config import Settings
from agentkeep.errors import InvalidRequest, PayloadTooLarge
from agentkeep.tools.fetch import Fetcher, FetchPolicy

__all__ = [
    "MEDIA_TYPES",
    "BinaryPart",
    "Message",
    "MessageReader",
    "Part",
    "TextPart",
    "UrlPart",
    "clean_message",
    "clean_text",
    "read_parts",
    "user_content",
]

MEDIA_TYPES: dict[str, frozenset[str]] = {
    "image_url": frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"}),
    "document_url": frozenset({"application/pdf", "text/plain"}),
    "audio_url": frozenset({"audio/wav", "audio/mpeg"}),
}
"""The media types a run accepts, per kind of URL part; a binary part may be any of them."""
_ANY_MEDIA = frozenset().union(*MEDIA_TYPES.values())
_URL_CLASSES: dict[str, type[ImageUrl | DocumentUrl | AudioUrl]] = {
    "image_url": ImageUrl,
    "document_url": DocumentUrl,
    "audio_url": AudioUrl,
}
_SHOWN_URL_CHARS = 100
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class TextPart(BaseModel):
    """Text of the message."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class UrlPart(BaseModel):
    """An image, document or audio file by URL (http or https)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["image_url", "document_url", "audio_url"]
    url: str
    media_type: str | None = Field(None, description="Needed when the URL's extension does not say it.")


class BinaryPart(BaseModel):
    """An image, document or audio file inline, base64-encoded."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["binary"]
    media_type: str = Field(description=f"One of: {', '.join(sorted(_ANY_MEDIA))}.")
    data: str = Field(description="The file's bytes, base64-encoded.")


Part = Annotated[TextPart | UrlPart | BinaryPart, Field(discriminator="type")]
_PARTS = TypeAdapter(list[Part])


@dataclass(frozen=True)
class Message:
    """A checked message: its text (a list's text parts joined), and its parts as stored with the
    run (None for a message of text)."""

    text: str
    parts: list[dict[str, Any]] | None = None


class MessageReader:
    """Checks the messages of runs against the settings' limits; one per runtime."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def read(self, message: str | Sequence[Any]) -> Message:
        if isinstance(message, str):
            return Message(clean_message(message, self.settings.max_message_chars))
        return await read_parts(
            message,
            max_chars=self.settings.max_message_chars,
            max_bytes=self.settings.max_body_bytes,
            fetcher=self._fetcher,
        )

    @functools.cached_property
    def _fetcher(self) -> Fetcher:
        return Fetcher(FetchPolicy.from_settings(self.settings))


def clean_message(message: str, max_chars: int) -> str:
    """Drop control characters other than newline and tab, trim, and check the length."""
    text = clean_text(message)
    if not text:
        raise InvalidRequest("message is empty: send some text in the 'message' field")
    if len(text) > max_chars:
        raise PayloadTooLarge(f"message has {len(text)} characters; the limit is {max_chars}")
    return text


async def read_parts(raw: Sequence[Any], *, max_chars: int, max_bytes: int, fetcher: Fetcher) -> Message:
    """Check `raw` (parts as the API takes them); raise `InvalidRequest` or `PayloadTooLarge`."""
    try:
        parts = _PARTS.validate_python(list(raw))
    except ValidationError as exc:
        error: Any = exc.errors()[0]
        raise InvalidRequest(f"{_where(tuple(error.get('loc', ())))}: {error.get('msg')}") from None
    texts: list[str] = []
    stored: list[dict[str, Any]] = []
    decoded = 0
    for index, part in enumerate(parts):
        if isinstance(part, TextPart):
            text = clean_text(part.text)
            if text:
                texts.append(text)
                stored.append({"type": "text", "text": text})
        elif isinstance(part, BinaryPart):
            decoded += _decoded_size(part, index)
            if decoded > max_bytes:
                raise PayloadTooLarge(f"the message's files decode to over {max_bytes} bytes, the limit")
            stored.append(part.model_dump())
        else:
            stored.append(await _checked_url(part, index, fetcher))
    chars = sum(len(text) for text in texts)
    if chars > max_chars:
        raise PayloadTooLarge(f"message has {chars} characters of text; the limit is {max_chars}")
    if not stored:
        raise InvalidRequest("message is empty: send some text or a file in the 'message' field")
    return Message("\n".join(texts), stored)


def user_content(parts: Sequence[dict[str, Any]]) -> list[UserContent]:
    """Stored parts (from `read_parts`) as Pydantic AI's prompt."""
    content: list[UserContent] = []
    for part in parts:
        kind = part["type"]
        if kind == "text":
            content.append(part["text"])
        elif kind == "binary":
            content.append(BinaryContent(base64.b64decode(part["data"]), media_type=part["media_type"]))
        else:
            content.append(_URL_CLASSES[kind](part["url"], media_type=part["media_type"]))
    return content


def clean_text(text: str) -> str:
    """`text` without control characters other than newline and tab, trimmed."""
    return _CONTROL_CHARS.sub("", text).strip()


def _decoded_size(part: BinaryPart, index: int) -> int:
    if part.media_type not in _ANY_MEDIA:
        raise InvalidRequest(
            f"message[{index}]: media type {part.media_type!r} is not accepted; send one of {_listed(_ANY_MEDIA)}"
        )
    try:
        return len(base64.b64decode(part.data, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"message[{index}].data is not valid base64") from None


async def _checked_url(part: UrlPart, index: int, fetcher: Fetcher) -> dict[str, Any]:
    shown = part.url if len(part.url) <= _SHOWN_URL_CHARS else part.url[:_SHOWN_URL_CHARS] + "…"
    if not part.url.lower().startswith(("http://", "https://")):
        raise InvalidRequest(f"message[{index}]: {part.type} {shown!r} is not an http or https URL")
    refusal = await fetcher.refusal(part.url)
    if refusal is not None:
        raise InvalidRequest(f"message[{index}]: {part.type} {shown!r} is refused: {refusal}")
    try:
        media_type = _URL_CLASSES[part.type](part.url, media_type=part.media_type).media_type
    except ValueError:
        raise InvalidRequest(
            f"message[{index}]: cannot tell the media type of {shown!r} from its name; give it as 'media_type'"
        ) from None
    allowed = MEDIA_TYPES[part.type]
    if media_type not in allowed:
        raise InvalidRequest(
            f"message[{index}]: {part.type} of media type {media_type!r} is not accepted; "
            f"send one of {_listed(allowed)}"
        )
    return {"type": part.type, "url": part.url, "media_type": media_type}


def _where(loc: tuple[Any, ...]) -> str:
    """`message[1].url` for the location (1, "image_url", "url"): the part, then its field (the
    second item is the part's type, which pydantic adds for a tagged union)."""
    if not loc:
        return "message"
    return f"message[{loc[0]}]" + "".join(f".{field}" for field in loc[2:])


def _listed(types: frozenset[str]) -> str:
    return ", ".join(sorted(types))
