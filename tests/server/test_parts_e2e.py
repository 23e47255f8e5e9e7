"""A message of parts (text, images, documents, audio) through a real `agentkeep serve`: what reaches the
model, what the session shows, and what is refused before anything is fetched or recorded."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import wait_finished
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import ServerProcess

# A 1x1 transparent PNG, and a public address written as a literal (no DNS lookup in the tests).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PUBLIC_IMAGE = "https://93.184.215.14/cat.png"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _user_content(request: dict[str, Any]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [m for m in request["messages"] if m["role"] == "user"][-1]["content"]
    return content


def test_parts_reach_the_model_and_the_session_describes_them(mock_llm: MockLLM, tmp_path: Path) -> None:
    """Text, an image by URL and an inline image: the model gets the text, the URL and the bytes; the
    session lists the files by type and media type, never echoing the bytes; a second turn and a
    background run (whose parts wait in the run's record) send them again."""
    mock_llm.set_default(Reply.text("A cat."))
    message = [
        {"type": "text", "text": "What is in\x00 these pictures?"},
        {"type": "image_url", "url": PUBLIC_IMAGE},
        {"type": "binary", "media_type": "image/png", "data": _b64(PNG)},
    ]
    env = server_env(mock_llm, f"sqlite:///{tmp_path / 'agentkeep.db'}")
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
        first = server.post_run(message=message, session_id="pics")
        assert first.status_code == 200, first.text
        sent = _user_content(mock_llm.requests[0])
        assert sent[0] == {"type": "text", "text": "What is in these pictures?"}
        assert sent[1]["image_url"]["url"] == PUBLIC_IMAGE
        assert sent[2]["image_url"]["url"] == f"data:image/png;base64,{_b64(PNG)}"

        assert server.post_run(message="And the colours?", session_id="pics").status_code == 200
        history = [m["content"] for m in mock_llm.requests[1]["messages"] if m["role"] == "user"]
        assert history == [sent, "And the colours?"]

        background = server.post_run(message=message, background=True)
        assert background.status_code == 202, background.text
        assert wait_finished(server, background.json()["run_id"])["status"] == "succeeded"
        assert _user_content(mock_llm.requests[2]) == sent

        session = server.client.get("/v1/sessions/pics").json()
    user = session["messages"][0]
    assert user["content"] == "What is in these pictures?"
    assert user["parts"] == [
        {"type": "image_url", "media_type": "image/png", "url": PUBLIC_IMAGE},
        {"type": "binary", "media_type": "image/png"},
    ]
    assert _b64(PNG) not in json.dumps(session)
    assert "parts" not in session["messages"][2]  # the plain second turn


class Listener:
    """A TCP listener on loopback that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    opened = Listener()
    yield opened
    opened.close()


@pytest.fixture
def server(mock_llm: MockLLM, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(MOCK_AGENT, tmp_path, env=server_env(mock_llm, f"sqlite:///{tmp_path / 'ak.db'}")) as proc:
        yield proc


def _refused(server: ServerProcess, status: int, *parts: dict[str, Any]) -> str:
    response = server.post_run(message=[{"type": "text", "text": "look"}, *parts])
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == ("payload_too_large" if status == 413 else "invalid_request"), error
    assert "\n" not in error["message"]
    message: str = error["message"]
    return message


def test_inward_and_non_http_urls_are_refused_before_anything_is_fetched(
    server: ServerProcess, mock_llm: MockLLM, listener: Listener
) -> None:
    """file://, the cloud metadata address, loopback (literal and by name) and a private network: 400
    each, naming the reason; the loopback listener they point at saw no connection, the model no
    request, and no run was recorded."""
    assert "not an http or https URL" in _refused(server, 400, {"type": "image_url", "url": "file:///etc/passwd"})
    metadata = _refused(server, 400, {"type": "image_url", "url": "http://169.254.169.254/latest/meta-data/x.png"})
    assert "169.254.169.254" in metadata and "refused" in metadata
    for host in ("127.0.0.1", "localhost", "[::1]", "10.0.0.8"):
        url = f"http://{host}:{listener.port}/cat.png"
        assert "refused" in _refused(server, 400, {"type": "image_url", "url": url})
    assert "refused" in _refused(
        server, 400, {"type": "document_url", "url": f"http://127.0.0.1:{listener.port}/a.pdf"}
    )
    assert listener.connections == 0
    assert mock_llm.request_count == 0
    assert server.client.get("/v1/runs").json()["runs"] == []


def test_files_over_the_size_limit_or_of_unaccepted_types_are_refused(server: ServerProcess, mock_llm: MockLLM) -> None:
    """A 20 MB image is 413; an unaccepted media type, a URL whose type cannot be told, bad base64 and
    a message of nothing are 400 (a part of an unknown type is the framework's 422); too much text is
    413, as for a plain message. Nothing reaches the model."""
    huge = {"type": "binary", "media_type": "image/png", "data": _b64(b"\0" * 20_000_000)}
    response = server.post_run(message=[huge])
    assert response.status_code == 413 and response.json()["error"]["type"] == "payload_too_large"
    svg = _refused(server, 400, {"type": "binary", "media_type": "image/svg+xml", "data": _b64(b"<svg/>")})
    assert "image/svg+xml" in svg and "image/png" in svg
    assert "media_type" in _refused(server, 400, {"type": "image_url", "url": "https://93.184.215.14/picture"})
    assert "image/svg+xml" in _refused(
        server, 400, {"type": "image_url", "url": "https://93.184.215.14/x", "media_type": "image/svg+xml"}
    )
    assert "base64" in _refused(server, 400, {"type": "binary", "media_type": "image/png", "data": "not base64!"})
    unknown = server.post_run(message=[{"type": "video_url", "url": PUBLIC_IMAGE}])
    assert unknown.status_code == 422 and unknown.json()["error"]["type"] == "validation_error"
    empty = server.post_run(message=[{"type": "text", "text": "  \x01 "}])
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
    long_text = server.post_run(message=[{"type": "text", "text": "x" * 6000}, {"type": "text", "text": "y" * 6000}])
    assert long_text.status_code == 413 and "characters" in long_text.json()["error"]["message"]
    assert mock_llm.request_count == 0
