"""Files the server ships as they are (the console, the API docs' bundles): held in memory, served with
their content type, an ETag, `Cache-Control: no-cache` (revalidated on every load, 304 when unchanged)
and the Content-Security-Policy of the page they belong to."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fastapi import Request, Response

__all__ = ["CONTENT_TYPES", "StaticFile", "serve_file", "static_file"]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def static_file(body: bytes, content_type: str) -> StaticFile:
    return StaticFile(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:20]}"')


def serve_file(request: Request, file: StaticFile, *, csp: str) -> Response:
    """The file, or 304 when the browser already holds this version."""
    headers = {
        "ETag": file.etag,
        "Cache-Control": "no-cache",
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
    }
    held = {tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")}
    if file.etag in held or "*" in held:
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=file.content_type, headers=headers)
