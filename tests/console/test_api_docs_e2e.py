"""`/docs` (Swagger UI) and `/redoc` (ReDoc) in a real headless Chromium with every request off
127.0.0.1 refused: both render the API's operations from files this server ships, with no error."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.console.browser import ConsolePage, require_browser
from tests.console.conftest import Console

require_browser()

OpenPage = Callable[..., ConsolePage]


@pytest.mark.parametrize(
    ("path", "operation"),
    [("/docs", "#swagger-ui .opblock"), ("/redoc", "[data-section-id^='operation/']")],
)
def test_the_api_reference_renders_its_operations_with_no_network(
    console: Console, open_page: OpenPage, path: str, operation: str
) -> None:
    """Offline, as on a machine with no internet: the page lists the operations (POST /v1/runs among
    them), loads nothing from another host (a CDN would be refused and the page left blank), and
    logs no error, CSP violations included."""
    page = open_page()
    page.page.goto(f"{console.server.url}{path}")
    page.page.locator(operation).first.wait_for()
    assert page.page.locator(operation).count() >= 10
    assert "Run an agent" in page.page.inner_text("body")
    page.shot(path.strip("/"))
    page.assert_clean()
    assert any("/docs/assets/" in url for url in page.requests)


def test_the_docs_pages_and_bundles_carry_a_policy_that_allows_only_this_server(console: Console) -> None:
    """Every docs response names 'self' as the only source of scripts and connections, and the
    pages themselves point at no other host."""
    for path in ("/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/redoc.standalone.js"):
        answer = console.server.client.get(path)
        assert answer.status_code == 200, path
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "connect-src 'self';" in policy and "http" not in policy
        assert answer.headers["etag"]
    for path in ("/docs", "/redoc"):
        assert "http" not in console.server.client.get(path).text
    assert console.server.client.get("/docs/assets/nope.js").status_code == 404
