"""Bad input gets a clear error in the contract's envelope and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, MockLLM]]:
    """One server for the whole module, with small limits so they are easy to cross."""
    tmp = tmp_path_factory.mktemp("bad-input")
    with MockLLM() as mock:
        env = server_env(
            mock,
            f"sqlite:///{tmp / 'agentkeep.db'}",
            AGENTKEEP_MAX_MESSAGE_CHARS="50",
            AGENTKEEP_MAX_BODY_BYTES="2000",
        )
        with ServerProcess(MOCK_AGENT, tmp, env=env) as server:
            yield server, mock


def _expect(response_status: int, body: dict[str, object], status: int, error_type: str) -> None:
    assert response_status == status, body
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict) and error["type"] == error_type
    message = error["message"]
    assert isinstance(message, str) and message and "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        (b"{not json", 400, "invalid_request"),
        (b"", 400, "invalid_request"),
        (b"[1, 2]", 422, "validation_error"),
        (b'{"session_id": "s"}', 422, "validation_error"),
        (b'{"message": 42}', 422, "validation_error"),
        (b'{"message": "hi", "unknown_field": 1}', 422, "validation_error"),
        (b'{"message": "   "}', 400, "invalid_request"),
        (b'{"message": "\\u0000\\u0007 "}', 400, "invalid_request"),
        (b'{"message": "' + b"x" * 51 + b'"}', 413, "payload_too_large"),
        (b'{"message": "hi", "session_id": "has space"}', 400, "invalid_request"),
        (b'{"message": "hi", "session_id": "' + b"s" * 129 + b'"}', 400, "invalid_request"),
        (b'{"message": "hi", "session_id": "../etc/passwd"}', 400, "invalid_request"),
        (b'{"message": "hi", "agent": "ghost"}', 404, "not_found"),
        (b'{"message": "' + b"y" * 3000 + b'"}', 413, "payload_too_large"),
    ],
)
def test_a_bad_run_request_is_refused_with_the_right_error(
    small_server: tuple[ServerProcess, MockLLM], body: bytes, status: int, error_type: str
) -> None:
    """Each malformed body gets its status and type; the model is never called."""
    server, mock = small_server
    before = mock.request_count
    response = server.client.post("/v1/runs", content=body, headers={"content-type": "application/json"})
    _expect(response.status_code, response.json(), status, error_type)
    assert mock.request_count == before


def test_a_body_streamed_past_the_limit_without_length_is_refused(small_server: tuple[ServerProcess, MockLLM]) -> None:
    """Chunked upload with no Content-Length: still 413 once the bytes pass the cap."""
    server, _ = small_server

    def chunks() -> Iterator[bytes]:
        yield b'{"message": "'
        for _ in range(10):
            yield b"z" * 500
        yield b'"}'

    response = server.client.post("/v1/runs", content=chunks(), headers={"content-type": "application/json"})
    _expect(response.status_code, response.json(), 413, "payload_too_large")


def test_form_encoded_json_from_curl_is_read_as_json(small_server: tuple[ServerProcess, MockLLM]) -> None:
    """`curl -d '{...}'` without a JSON content type still works."""
    server, _ = small_server
    response = server.client.post(
        "/v1/runs", content=b'{"message": "hello"}', headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("DELETE", "/v1/runs", 405, "method_not_allowed"),
        ("PUT", "/v1/runs", 405, "method_not_allowed"),
        ("POST", "/health", 405, "method_not_allowed"),
        ("GET", "/v1/runs/run_doesnotexist", 404, "not_found"),
        ("GET", "/v1/sessions/never-made", 404, "not_found"),
        ("DELETE", "/v1/sessions/never-made", 404, "not_found"),
        ("GET", "/v1/sessions/bad%20id", 400, "invalid_request"),
    ],
)
def test_routes_methods_and_missing_things_use_the_envelope(
    small_server: tuple[ServerProcess, MockLLM], method: str, path: str, status: int, error_type: str
) -> None:
    """The framework's own 404 and 405 come in the same envelope as ours."""
    server, _ = small_server
    response = server.client.request(method, path)
    _expect(response.status_code, response.json(), status, error_type)


def test_a_refusal_from_a_middleware_is_written_like_any_other_error(
    small_server: tuple[ServerProcess, MockLLM],
) -> None:
    """The 413 the body limit sends before any route runs has the same bytes' shape as a route's 404
    or the framework's 422: compact JSON, one envelope, so a client can compare or log them alike."""
    import json

    server, _ = small_server
    refusals = [
        server.client.post("/v1/runs", content=b'{"message": "' + b"x" * 5000 + b'"}'),
        server.client.get("/v1/runs/run_doesnotexist"),
        server.client.post("/v1/runs", json={"message": 3}),
    ]
    assert [r.status_code for r in refusals] == [413, 404, 422]
    for refusal in refusals:
        body = refusal.json()
        assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
        assert refusal.content == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        assert refusal.headers["content-type"] == "application/json"


def test_injection_payloads_are_plain_data(small_server: tuple[ServerProcess, MockLLM]) -> None:
    """SQL in a session id or message is stored and returned as text, touching nothing else."""
    server, _ = small_server
    sid = "x--DROP:TABLE.agentkeep_sessions"
    message = "'); DELETE FROM agentkeep_sessions; --"
    assert server.post_run(message=message, session_id=sid).status_code == 200
    history = server.client.get(f"/v1/sessions/{sid}").json()["messages"]
    assert history[0]["content"] == message
    assert server.client.get("/health").json()["checks"]["database"] == "ok"


def test_no_traceback_reaches_the_log_for_bad_input(
    small_server: tuple[ServerProcess, MockLLM], tmp_path: Path
) -> None:
    """User mistakes are answered, not logged as crashes."""
    server, _ = small_server
    server.client.post("/v1/runs", content=b"{oops", headers={"content-type": "application/json"})
    assert "Traceback" not in server.output()
