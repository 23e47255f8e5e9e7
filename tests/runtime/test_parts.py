"""`agentkeep.parts` in process: the checks on a message of parts, and what Pydantic AI is given."""

from __future__ import annotations

import base64
import socket
from typing import Any

import pytest
from pydantic_ai import AudioUrl, BinaryContent, DocumentUrl, ImageUrl

from agentkeep.errors import InvalidRequest, PayloadTooLarge
from agentkeep.parts import read_parts, user_content
from agentkeep.tools.fetch import Fetcher, FetchPolicy

ADDRESSES = {"images.example": "93.184.215.14", "inside.example": "10.1.2.3"}


def _resolver(host: str, port: Any, *args: Any) -> list[Any]:
    """A DNS of two names: one public, one private (no network in the tests)."""
    if host not in ADDRESSES:
        raise socket.gaierror(f"{host} does not resolve")
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ADDRESSES[host], int(port)))]


async def _read(*parts: dict[str, Any], max_chars: int = 100, max_bytes: int = 1000, **policy: Any) -> Any:
    fetcher = Fetcher(FetchPolicy(**policy), resolver=_resolver)
    return await read_parts(list(parts), max_chars=max_chars, max_bytes=max_bytes, fetcher=fetcher)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_checked_parts_become_pydantic_ais_content() -> None:
    """Text joined and cleaned; URL parts keep their URL with a media type inferred or given; an
    inline file is its bytes again; empty text parts are dropped."""
    message = await _read(
        {"type": "text", "text": " Look\x07 "},
        {"type": "text", "text": "   "},
        {"type": "image_url", "url": "https://images.example/cat.png"},
        {"type": "document_url", "url": "https://images.example/report", "media_type": "application/pdf"},
        {"type": "audio_url", "url": "https://images.example/a.mp3"},
        {"type": "binary", "media_type": "image/png", "data": _b64(b"\x89PNG")},
        {"type": "text", "text": "closely"},
    )
    assert message.text == "Look\nclosely"
    content = user_content(message.parts)
    assert content[0] == "Look" and content[-1] == "closely"
    image, document, audio, binary = content[1:5]
    assert isinstance(image, ImageUrl) and image.media_type == "image/png" and not image.force_download
    assert isinstance(document, DocumentUrl) and document.media_type == "application/pdf"
    assert isinstance(audio, AudioUrl) and audio.media_type == "audio/mpeg"
    assert isinstance(binary, BinaryContent) and binary.data == b"\x89PNG" and binary.media_type == "image/png"


async def test_a_name_is_refused_when_it_resolves_inward_or_not_at_all() -> None:
    """The same guard as fetch_url: the answer of the lookup is checked, not only the name."""
    with pytest.raises(InvalidRequest, match=r"10\.1\.2\.3 is not permitted"):
        await _read({"type": "image_url", "url": "https://inside.example/cat.png"})
    with pytest.raises(InvalidRequest, match="does not resolve"):
        await _read({"type": "image_url", "url": "https://nowhere.example/cat.png"})


async def test_fetch_urls_host_lists_and_ports_apply_to_parts_too() -> None:
    """AGENTKEEP_FETCH_DENY_HOSTS and _PORTS reach a part's URL as they reach fetch_url."""
    with pytest.raises(InvalidRequest, match="deny list"):
        await _read({"type": "image_url", "url": "https://images.example/cat.png"}, deny_hosts=("images.example",))
    with pytest.raises(InvalidRequest, match="refused"):
        await _read({"type": "image_url", "url": "https://images.example:8443/cat.png"})


async def test_the_decoded_size_of_all_files_is_capped() -> None:
    """Two files of 600 bytes each under a 1000-byte cap: 413, however large the body may be."""
    part = {"type": "binary", "media_type": "application/pdf", "data": _b64(b"%" * 600)}
    await _read(part)
    with pytest.raises(PayloadTooLarge, match="1000 bytes"):
        await _read(part, part)


async def test_a_urls_media_type_must_suit_its_kind() -> None:
    """An image_url of a PDF, or an audio_url of an image, is refused with the accepted list."""
    with pytest.raises(InvalidRequest, match="image/gif, image/jpeg, image/png, image/webp"):
        await _read({"type": "image_url", "url": "https://images.example/a.pdf"})
    with pytest.raises(InvalidRequest, match="audio/mpeg, audio/wav"):
        await _read({"type": "audio_url", "url": "https://images.example/x", "media_type": "image/png"})


async def test_a_malformed_part_is_one_line_naming_where() -> None:
    """A missing field, or one the API does not take (`force_download`), names the part and field."""
    with pytest.raises(InvalidRequest, match=r"message\[0\]"):
        await _read({"type": "image_url"})
    with pytest.raises(InvalidRequest, match="force_download"):
        await _read({"type": "image_url", "url": "https://images.example/a.png", "force_download": "allow-local"})
