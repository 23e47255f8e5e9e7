"""Lambda events → one ASGI request, and back: AWS's example events, field by field."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from agentkeep.serverless.events import BadEvent, HTTPResponse, parse_event, to_lambda_response
from tests.serverless.support import EVENTS, SOURCES


def _example(source: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{source}.json").read_text())
    return event


def _headers(scope: dict[str, Any], name: str) -> list[str]:
    return [v.decode() for k, v in scope["headers"] if k == name.encode()]


def test_rest_v1_keeps_every_value_of_repeated_headers_and_query_parameters() -> None:
    """The multi-value maps win over the single-value ones, which hold only the last value."""
    request = parse_event(_example("rest_v1"))
    scope = request.asgi_scope()
    assert (scope["method"], scope["path"]) == ("GET", "/my/path")
    assert scope["query_string"] == b"parameter1=value1&parameter1=value2&parameter2=value"
    assert _headers(scope, "header2") == ["value1", "value2"]
    assert scope["client"] == ("192.0.2.1", 0)
    assert request.body == b"Hello from Lambda!"
    assert not request.payload_v2


@pytest.mark.parametrize("source", ["http_v2", "function_url"])
def test_v2_events_keep_the_raw_query_and_turn_cookies_into_one_cookie_header(source: str) -> None:
    """HTTP API and function URL events: rawQueryString as sent; the `cookies` list is the Cookie header."""
    request = parse_event(_example(source))
    scope = request.asgi_scope()
    assert (scope["method"], scope["path"]) == ("POST", "/my/path")
    assert scope["query_string"] == b"parameter1=value1&parameter1=value2&parameter2=value"
    assert _headers(scope, "header2") == ["value1,value2"]
    assert _headers(scope, "cookie") == ["cookie1; cookie2"]
    assert scope["client"] is not None and scope["scheme"] == "https"
    assert request.payload_v2


@pytest.mark.parametrize("source", SOURCES)
def test_a_base64_body_is_decoded(source: str) -> None:
    event = _example(source) | {"body": base64.b64encode(b'{"message": "hi"}').decode(), "isBase64Encoded": True}
    assert parse_event(event).body == b'{"message": "hi"}'


def test_a_body_that_claims_base64_but_is_not_is_refused() -> None:
    with pytest.raises(BadEvent, match="base64"):
        parse_event(_example("http_v2") | {"body": "not base64!", "isBase64Encoded": True})


def test_a_named_http_api_stage_is_not_part_of_the_route() -> None:
    """An HTTP API stage `prod` puts /prod in front of rawPath; the app's routes never have it."""
    event = _example("http_v2")
    event["rawPath"] = "/prod/v1/runs"
    event["requestContext"]["stage"] = "prod"
    assert parse_event(event).path == "/v1/runs"


@pytest.mark.parametrize("event", [{"detail-type": "Scheduled Event", "source": "aws.events"}, {"Records": []}])
def test_an_event_that_is_not_http_is_refused_with_the_way_out(event: dict[str, Any]) -> None:
    with pytest.raises(BadEvent, match="worker_handler"):
        parse_event(event)


def test_v2_responses_put_set_cookie_in_cookies_and_join_other_repeated_headers() -> None:
    response = HTTPResponse(
        200,
        [
            (b"content-type", b"application/json"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            (b"vary", b"accept"),
            (b"vary", b"origin"),
        ],
        b'{"ok": true}',
    )
    out = to_lambda_response(response, payload_v2=True)
    assert out["cookies"] == ["a=1", "b=2"]
    assert out["headers"]["vary"] == "accept, origin" and "set-cookie" not in out["headers"]
    assert out["body"] == '{"ok": true}' and out["isBase64Encoded"] is False


def test_v1_responses_keep_repeated_headers_as_lists() -> None:
    response = HTTPResponse(200, [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")], b"")
    out = to_lambda_response(response, payload_v2=False)
    assert out["multiValueHeaders"]["set-cookie"] == ["a=1", "b=2"]


def test_a_binary_response_goes_back_base64() -> None:
    body = bytes(range(256))
    out = to_lambda_response(HTTPResponse(200, [(b"content-type", b"image/png")], body), payload_v2=True)
    assert out["isBase64Encoded"] is True and base64.b64decode(out["body"]) == body


def test_an_event_stream_goes_back_as_text() -> None:
    body = b"event: run.started\ndata: {}\n\n"
    out = to_lambda_response(HTTPResponse(200, [(b"content-type", b"text/event-stream")], body), payload_v2=False)
    assert out["isBase64Encoded"] is False and out["body"] == body.decode()


def test_a_percent_encoded_v2_path_is_decoded_for_routing_and_kept_raw() -> None:
    event = _example("function_url") | {"rawPath": "/v1/sessions/a%3Ab"}
    scope = parse_event(event).asgi_scope()
    assert scope["path"] == "/v1/sessions/a:b" and scope["raw_path"] == b"/v1/sessions/a%3Ab"
