"""Lambda HTTP events ↔ one ASGI request: API Gateway REST (payload 1.0), HTTP API and function
URLs (payload 2.0).

    event ──► HTTPRequest (method, path, query, headers, body, client) ──► ASGI scope + body
    ASGI response (status, headers, body) ──► the response shape the event's source expects

What each source sends differently:

    REST (1.0)     `httpMethod`, `path` (without the stage); `multiValueHeaders` and
                   `multiValueQueryStringParameters` carry repeated names, the single-value
                   maps only the last; cookies are `Cookie` headers. The response may carry
                   `multiValueHeaders`, so several Set-Cookie headers survive.
    HTTP API /     `version: "2.0"`, `requestContext.http.method`, `rawPath` (percent-encoded,
    function URL   with a named stage in front), `rawQueryString` as sent; repeated headers arrive joined
                   with commas; cookies come in their own `cookies` list and Set-Cookie goes
                   back the same way, other repeated headers joined with commas.

A body is base64 when `isBase64Encoded` says so, both ways; a response goes back as text when its
content type is text (JSON, SSE, HTML, ...), else base64. Standard library only: importing this
module costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode

__all__ = ["BadEvent", "HTTPRequest", "HTTPResponse", "parse_event", "to_lambda_response"]

_TEXT_TYPES = ("text/", "application/json", "application/problem+json", "application/javascript", "+json", "+xml")


class BadEvent(ValueError):
    """The event is not an HTTP event from API Gateway or a function URL."""


@dataclass
class HTTPRequest:
    """One HTTP request, whatever event carried it."""

    method: str
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: tuple[str, int] | None
    scheme: str = "https"
    payload_v2: bool = True  # the response shape the source expects
    raw_path: bytes | None = None  # as sent, percent-encoded; None: `path` encoded again

    def asgi_scope(self) -> dict[str, Any]:
        host = next((v.decode("latin-1") for k, v in self.headers if k == b"host"), "lambda")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": self.method,
            "scheme": self.scheme,
            "path": self.path,
            "raw_path": self.raw_path if self.raw_path is not None else quote(self.path).encode(),
            "root_path": "",
            "query_string": self.query_string,
            "headers": self.headers,
            "client": self.client,
            "server": (host, 443 if self.scheme == "https" else 80),
        }


@dataclass
class HTTPResponse:
    """What the app answered, complete."""

    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


def parse_event(event: Mapping[str, Any]) -> HTTPRequest:
    """The request an API Gateway (REST or HTTP API) or function URL event carries; `BadEvent` otherwise."""
    if not isinstance(event, Mapping):
        raise BadEvent("the event is not a JSON object")
    if event.get("version") == "2.0" and "requestContext" in event:
        return _parse_v2(event)
    if "httpMethod" in event:
        return _parse_v1(event)
    raise BadEvent(
        "agentkeep.serverless.handler takes API Gateway (REST or HTTP API) and function URL events; "
        "point schedules and queues at agentkeep.serverless.worker_handler"
    )


def _parse_v1(event: Mapping[str, Any]) -> HTTPRequest:
    headers = _multi(event.get("multiValueHeaders"), event.get("headers"))
    query = _multi(event.get("multiValueQueryStringParameters"), event.get("queryStringParameters"))
    identity = (event.get("requestContext") or {}).get("identity") or {}
    return HTTPRequest(
        method=str(event["httpMethod"]).upper(),
        path=str(event.get("path") or "/"),
        query_string=urlencode([(k, v) for k, values in query.items() for v in values]).encode(),
        headers=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, values in headers.items() for v in values],
        body=_body(event),
        client=_client(identity.get("sourceIp")),
        scheme=_scheme(headers),
        payload_v2=False,
    )


def _parse_v2(event: Mapping[str, Any]) -> HTTPRequest:
    context = event.get("requestContext") or {}
    http = context.get("http") or {}
    headers = [(str(k).lower(), str(v)) for k, v in (event.get("headers") or {}).items() if k.lower() != "cookie"]
    cookies = [str(c) for c in event.get("cookies") or []]
    if not cookies and (joined := _get(event.get("headers"), "cookie")):
        cookies = [joined]
    if cookies:
        headers.append(("cookie", "; ".join(cookies)))
    raw_path = str(event.get("rawPath") or http.get("path") or "/")
    stage = context.get("stage")
    if stage and stage != "$default" and raw_path.startswith(f"/{stage}/"):
        raw_path = raw_path[len(stage) + 1 :]  # an HTTP API's named stage prefixes the path; routes lack it
    return HTTPRequest(
        method=str(http.get("method") or "GET").upper(),
        path=unquote(raw_path),
        raw_path=raw_path.encode("latin-1"),
        query_string=str(event.get("rawQueryString") or "").encode("latin-1"),
        headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        body=_body(event),
        client=_client(http.get("sourceIp")),
        scheme=_scheme({k: [v] for k, v in headers}),
        payload_v2=True,
    )


def _multi(multi: Mapping[str, Any] | None, single: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Repeated values from the multi-value map when the source sent one, else the single values."""
    if multi:
        return {str(k): [str(v) for v in values or []] for k, values in multi.items()}
    return {str(k): [str(v)] for k, v in (single or {}).items() if v is not None}


def _get(headers: Mapping[str, Any] | None, name: str) -> str | None:
    return next((str(v) for k, v in (headers or {}).items() if k.lower() == name), None)


def _body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(str(body), validate=True)
        except (binascii.Error, ValueError):
            raise BadEvent("the event says its body is base64 but it is not") from None
    return str(body).encode()


def _client(source_ip: object) -> tuple[str, int] | None:
    return (str(source_ip), 0) if source_ip else None


def _scheme(headers: Mapping[str, list[str]]) -> str:
    proto = next((values[-1] for k, values in headers.items() if k.lower() == "x-forwarded-proto" and values), "")
    return "http" if proto.lower() == "http" else "https"


def to_lambda_response(response: HTTPResponse, *, payload_v2: bool) -> dict[str, Any]:
    """The dict Lambda hands back to API Gateway or the function URL."""
    grouped: dict[str, list[str]] = {}
    for key, value in response.headers:
        grouped.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    content_type = grouped.get("content-type", [""])[0].lower()
    body: str | None = None
    if not response.body or any(marker in content_type for marker in _TEXT_TYPES):
        with contextlib.suppress(UnicodeDecodeError):
            body = response.body.decode()
    out: dict[str, Any] = {
        "statusCode": response.status,
        "body": body if body is not None else base64.b64encode(response.body).decode(),
        "isBase64Encoded": body is None,
    }
    if payload_v2:
        cookies = grouped.pop("set-cookie", [])
        out["headers"] = {k: ", ".join(values) for k, values in grouped.items()}
        if cookies:
            out["cookies"] = cookies
    else:
        out["multiValueHeaders"] = grouped
    return out
