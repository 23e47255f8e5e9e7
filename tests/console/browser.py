"""Debian's Chromium driven by Playwright, with every request and console message of a page recorded.

Playwright's own browser download does not work on these machines, so the browser is the system's
`/usr/bin/chromium`; `require_browser()` skips a module with the reason when it or Playwright is
missing (`.ci/run` installs both, and under CI=true their absence fails rather than skips).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Request, Route

CHROMIUM = Path("/usr/bin/chromium")
# Headless, offline: nothing phones home (updates, sync, field trials), no QUIC, no GPU in CI.
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_browser() -> None:
    """Skip the calling test module, saying what is missing, unless Chromium and Playwright are there;
    under CI=true (where `.ci/run` installs both) their absence fails the run instead."""
    missing = None
    if importlib.util.find_spec("playwright") is None:
        missing = "the Python package `playwright` is not installed (pip install -e '.[dev]')"
    elif not CHROMIUM.exists():
        missing = f"Debian's chromium is not at {CHROMIUM} (apt-get install chromium)"
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing} (required under CI=true)", pytrace=False)
    pytest.skip(missing, allow_module_level=True)


@dataclass
class ConsolePage:
    """A page on the console at `base_url` that refuses and records any request to another host."""

    page: Page
    base_url: str
    screenshots: Path
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.on("request", self._on_request)
        self.page.context.route("**/*", self._guard)
        self.page.set_default_timeout(15_000)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in {"error", "assert"}:
            self.errors.append(f"{message.type}: {message.text} at {message.location}")

    def _on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _guard(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort()

    def open(self, hash_route: str = "") -> None:
        self.page.goto(f"{self.base_url}/{hash_route}")

    def login(self, key: str) -> None:
        """Open the console, see the key form (the server asks for keys), and sign in."""
        self.open()
        form = self.page.locator("#login-form")
        form.wait_for(state="visible")
        self.page.fill("#api-key", key)
        self.page.click("#login-form button[type=submit]")
        self.page.locator("#login").wait_for(state="hidden")
        self.page.locator("#forget-key").wait_for(state="visible")

    def go(self, hash_route: str) -> None:
        """Navigate inside the page (a hash change), keeping the tab's session storage."""
        self.page.evaluate("(h) => { window.location.hash = h; }", hash_route)

    def shot(self, name: str) -> Path:
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path

    def storage(self) -> dict[str, Any]:
        result: dict[str, Any] = self.page.evaluate(
            "() => ({session: {...sessionStorage}, local: {...localStorage}, cookies: document.cookie})"
        )
        return result

    def assert_clean(self) -> None:
        """No console error, no uncaught exception, no request that left 127.0.0.1 on the server's port."""
        assert self.errors == [], self.errors
        assert self.refused == [], f"requests to other hosts: {self.refused}"
        port = urlsplit(self.base_url).port
        foreign = [
            url for url in self.requests if not url.startswith(("data:", "blob:")) and urlsplit(url).port != port
        ]
        assert foreign == [], foreign
        assert self.requests, "the page made no request at all"
