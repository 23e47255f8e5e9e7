"""Fixtures for the console's browser tests: one keyed, priced `agentkeep serve`, one headless Chromium,
and a fresh browser context (so a fresh tab session storage) for every page a test opens."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.console.browser import CHROMIUM, LAUNCH_ARGS, ConsolePage
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.cli import create_key
from tests.support.server import ServerProcess

# $300 per million output tokens, 100 output tokens a reply: each priced reply costs $0.03.
OUTPUT_USD_PER_M = 300
REPLY_COST = 0.03


def priced(text: str = "priced answer") -> Reply:
    return Reply.text(text).with_usage(prompt_tokens=40, completion_tokens=100)


@dataclass
class Console:
    """The server under test, its scripted model, two users' keys and an admin's (`agentkeep keys create`)."""

    server: ServerProcess
    mock: MockLLM
    alice: str
    bob: str
    admin: str

    def run(self, key: str, **body: Any) -> httpx.Response:
        return self.server.client.post("/v1/runs", json=body, headers={"Authorization": f"Bearer {key}"})

    def get(self, path: str, key: str) -> Any:
        response = self.server.client.get(path, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A loopback server that requires keys (AGENTKEEP_AUTH=required), with prices for the mock model."""
    tmp = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{tmp / 'agentkeep.db'}"
    alice, bob = create_key(url, tmp, "alice"), create_key(url, tmp, "bob")
    admin = create_key(url, tmp, "ops", admin=True)
    prices = tmp / "prices.json"
    prices.write_text(json.dumps({"mock": {"input": 0, "output": OUTPUT_USD_PER_M}}))
    with MockLLM(default=priced()) as mock:
        env = server_env(
            mock,
            url,
            AGENTKEEP_AUTH="required",
            AGENTKEEP_RATE_LIMIT="100000/minute",
            AGENTKEEP_READ_RATE_LIMIT="100000/minute",
            AGENTKEEP_PRICES_FILE=str(prices),
            AGENTKEEP_BUDGET_USER_DAILY_USD="100",
            TOOL_LOG=str(tmp / "tools.log"),
        )
        with ServerProcess(MOCK_AGENT, tmp, env=env) as server:
            yield Console(server, mock, alice, bob, admin)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(chromium: Any, console: Console, tmp_path: Path) -> Iterator[Callable[..., ConsolePage]]:
    """Make a console page in a new browser context; screenshots go to this test's tmp folder."""
    contexts: list[Any] = []

    def make(viewport: dict[str, int] | None = None) -> ConsolePage:
        context = chromium.new_context(viewport=viewport or {"width": 1280, "height": 800})
        contexts.append(context)
        return ConsolePage(context.new_page(), console.server.url, tmp_path / "screenshots")

    yield make
    for context in contexts:
        context.close()
