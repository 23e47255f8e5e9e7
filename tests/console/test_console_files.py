"""The console's files as HTTP serves them: no browser needed, so these run everywhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.testing.mock_llm import MockLLM
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import ServerProcess

MARKUP_SINKS = re.compile(r"\.(?:inner|outer)HTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function")
CONSOLE_DIR = Path(__file__).resolve().parents[2] / "src" / "agentkeep" / "console"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A loopback server without keys (AGENTKEEP_AUTH=auto on 127.0.0.1)."""
    tmp = tmp_path_factory.mktemp("console-files")
    with MockLLM() as mock, ServerProcess(MOCK_AGENT, tmp, env=server_env(mock, f"sqlite:///{tmp / 'db'}")) as server:
        yield server


def test_the_root_is_the_console_with_a_strict_policy(served: ServerProcess) -> None:
    """GET / is the HTML page, says whether keys are needed, and allows nothing but this server."""
    response = served.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<html lang="en" data-auth="off">' in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe" not in policy and "http" not in policy
    assert response.headers["cache-control"] == "no-cache" and response.headers["etag"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert served.client.get("/console/index.html").text == response.text


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ],
)
def test_each_file_has_its_type_and_revalidates_to_304(served: ServerProcess, name: str, content_type: str) -> None:
    """The browser keeps a file until its ETag changes: a repeat load costs a 304 and no body."""
    first = served.client.get(f"/console/{name}")
    assert first.status_code == 200
    assert first.headers["content-type"] == content_type
    assert first.content == (CONSOLE_DIR / name).read_bytes()
    again = served.client.get(f"/console/{name}", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_head_answers_like_get_without_a_body(served: ServerProcess) -> None:
    """`curl -I` and uptime checkers ask HEAD /: the same status and headers, no body."""
    get = served.client.get("/console/app.js")
    head = served.client.head("/console/app.js")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == get.headers["etag"] and head.headers["content-type"] == get.headers["content-type"]
    assert served.client.head("/").status_code == 200


@pytest.mark.parametrize("name", ["missing.js", "..%2Fserver%2Fconsole.py", "%2e%2e%2f__init__.py"])
def test_only_the_shipped_files_are_served(served: ServerProcess, name: str) -> None:
    """Anything else is the contract's 404 envelope; no path is ever joined from the URL."""
    response = served.client.get(f"/console/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_the_console_stays_small() -> None:
    """Everything the page loads adds up to well under the 300 KB goal, with no build step."""
    total = sum(path.stat().st_size for path in CONSOLE_DIR.iterdir() if path.is_file())
    assert total < 100_000, total
    for path in CONSOLE_DIR.glob("*.js"):
        assert not MARKUP_SINKS.search(path.read_text()), f"{path.name} builds markup from strings"


def test_the_console_is_not_in_the_api_schema(served: ServerProcess) -> None:
    """The page is not an API: OpenAPI lists only the routes scripts may call."""
    paths = served.client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/console") for p in paths)
