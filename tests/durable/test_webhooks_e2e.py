"""Completion webhooks: signed, retried while the receiver fails, refused for forbidden addresses."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.durable.support import DURABLE_AGENT, durable_env, submit, wait_finished, wait_for
from tests.support.server import ServerProcess

SECRET = "webhook-secret-for-tests"


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 500 to its first `failures` deliveries."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[int, dict[str, str], bytes]] = []  # (answered status, headers, body)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.received) < receiver.failures else 200
                receiver.received.append((status, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return [(headers, json.loads(body)) for status, headers, body in self.received if status == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver(failures=2)
    yield hook
    hook.close()


@pytest.fixture
def server(receiver: Receiver, tmp_path: Path) -> Iterator[tuple[ServerProcess, MockLLM]]:
    with MockLLM() as mock:
        env = durable_env(
            mock,
            f"sqlite:///{tmp_path / 'agentkeep.db'}",
            tmp_path,
            AGENTKEEP_WEBHOOK_SECRET=SECRET,
            AGENTKEEP_WEBHOOK_ALLOW_NETWORKS="127.0.0.1/32",
            AGENTKEEP_FETCH_PORTS=f"80,443,{receiver.port}",
        )
        with ServerProcess(DURABLE_AGENT, tmp_path, env=env) as proc:
            yield proc, mock


def test_the_finished_run_arrives_signed_after_the_failing_receiver_is_retried(
    server: tuple[ServerProcess, MockLLM], receiver: Receiver
) -> None:
    """Two 500s, then a 200: the body is the run's final record and its HMAC-SHA256 signature verifies."""
    proc, mock = server
    mock.enqueue(Reply.text("all done"))
    run_id = submit(proc, "work", webhook_url=receiver.url)
    final = wait_finished(proc, run_id)
    headers, body = wait_for(receiver.delivered, 30, "the webhook to be delivered")[0]
    assert [status for status, _, _ in receiver.received] == [500, 500, 200]
    assert body["run_id"] == run_id and body["status"] == "succeeded" and body["output"] == "all done"
    assert body == final
    raw = receiver.received[-1][2]
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Agentkeep-Signature"], expected)
    assert headers["X-Agentkeep-Run-Id"] == run_id
    tampered = "sha256=" + hmac.new(SECRET.encode(), raw + b" ", hashlib.sha256).hexdigest()
    assert headers["X-Agentkeep-Signature"] != tampered


def test_a_cancelled_run_is_reported_too(server: tuple[ServerProcess, MockLLM], receiver: Receiver) -> None:
    """The webhook also carries a run that ended `cancelled`."""
    proc, mock = server
    receiver.failures = 0
    mock.enqueue(Reply.text("slow").with_latency(20))
    run_id = submit(proc, "work", webhook_url=receiver.url)
    wait_for(lambda: mock.request_count == 1, 30, "the model request to start")
    assert proc.client.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
    _, body = wait_for(receiver.delivered, 30, "the webhook to be delivered")[0]
    assert body["run_id"] == run_id and body["status"] == "cancelled"


def test_forbidden_webhook_urls_are_refused_before_anything_is_recorded(
    server: tuple[ServerProcess, MockLLM], receiver: Receiver
) -> None:
    """The fetch tool's SSRF rules apply: private and metadata addresses, closed ports, other schemes;
    and a synchronous run cannot take a webhook."""
    proc, _ = server
    for url in (
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data",
        f"http://127.0.0.1:{receiver.port + 1}/hook",
        "file:///etc/passwd",
    ):
        refused = proc.post_run(message="x", background=True, webhook_url=url)
        assert refused.status_code == 400, (url, refused.text)
        assert refused.json()["error"]["type"] == "invalid_request"
    sync = proc.post_run(message="x", webhook_url=receiver.url)
    assert sync.status_code == 400 and "background" in sync.json()["error"]["message"]
    assert receiver.received == []
