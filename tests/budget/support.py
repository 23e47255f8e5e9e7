"""Helpers for the budget tests: a webhook receiver, price files and ledger reads straight from SQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import ServerProcess

# $300 per million output tokens and 100 output tokens a reply: every run costs $0.03, and with
# max_tokens 120 each request reserves $0.036.
OUTPUT_USD_PER_M = 300
REPLY_OUTPUT_TOKENS = 100
RUN_COST = OUTPUT_USD_PER_M * REPLY_OUTPUT_TOKENS / 1_000_000
MAX_TOKENS = 120


def priced_reply(latency: float = 0.0) -> Reply:
    return (
        Reply.text("priced answer")
        .with_usage(prompt_tokens=40, completion_tokens=REPLY_OUTPUT_TOKENS)
        .with_latency(latency)
    )


def write_prices(directory: Path) -> Path:
    path = directory / "prices.json"
    path.write_text(json.dumps({"mock": {"input": 0, "output": OUTPUT_USD_PER_M}}))
    return path


def budget_env(mock: MockLLM, database_url: str, directory: Path, **extra: str) -> dict[str, str]:
    """A server on the mock model with the test prices, a reserve of $0.036 per request."""
    return server_env(
        mock,
        database_url,
        AGENTKEEP_PRICES_FILE=str(write_prices(directory)),
        AGENTKEEP_BUDGET_MAX_TOKENS=str(MAX_TOKENS),
        **extra,
    )


def start_servers(stack: ExitStack, count: int, env: dict[str, str], workdir: Path) -> list[ServerProcess]:
    """`count` servers on the mock agent, booted in parallel; `stack` stops them."""
    servers = [ServerProcess(MOCK_AGENT, workdir, env=env) for _ in range(count)]
    for server in servers:
        stack.callback(server.stop)
    for server in servers:
        server.wait_ready()
    return servers


def sync_url(database_url: str) -> str:
    return database_url.replace("postgresql://", "postgresql+psycopg://", 1)


def query(database_url: str, sql: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())
    finally:
        engine.dispose()


def ledger_total(database_url: str) -> float:
    return float(query(database_url, "SELECT COALESCE(SUM(cost_nano), 0) FROM agentkeep_ledger")[0][0]) / 1e9


def runs_total(database_url: str) -> float:
    return float(query(database_url, "SELECT COALESCE(SUM(cost_usd), 0) FROM agentkeep_runs")[0][0])


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records every POSTed JSON body.

    `fail_first` answers that many requests with 503 first, to exercise the sender's retries.
    """

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self._fail_first = fail_first
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with receiver._lock:
                    receiver.attempts += 1
                    fail = receiver.attempts <= receiver._fail_first
                    if not fail:
                        receiver.bodies.append(body)
                self.send_response(503 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.bodies)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
