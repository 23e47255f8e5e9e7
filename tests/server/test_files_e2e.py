"""`GET /v1/sessions/{id}/files[/{path}]` end to end: what the real write_file wrote is listed and
downloaded by its owner (or an admin naming them), as an inert attachment, and by nobody else;
hostile paths never reach a file outside the session's folder; deleting the session deletes them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from agentkeep.tools.scope import scope_folder
from tests.support.workspace import CROSS_SCOPE, Served, served

SECRET = "alice-private-figures-5c2e"
HTML = "<html><script>fetch('/v1/runs').then(r => r.text()).then(alert)</script></html>"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A keyed server where alice's session `s1` holds report.md (written by write_file), page.html,
    a file with a hostile name, and a symlink to /etc/passwd such as run_python could leave."""
    tmp = tmp_path_factory.mktemp("files")
    with served(tmp, "session") as s:
        assert "wrote" in s.call(s.alice, "s1", "write_file", {"path": "reports/q3.md", "content": SECRET})
        s.call(s.alice, "s1", "write_file", {"path": "page.html", "content": HTML})
        s.call(s.bob, "b1", "write_file", {"path": "bob.txt", "content": "bob's"})
        folder = s.workspace / scope_folder("session", "alice", "s1")
        (folder / 'we"ird; é.txt').write_text("odd")
        os.symlink("/etc/passwd", folder / "passwd")
        yield s


def _raw(s: Served, target: str, key: str) -> httpx.Response:
    """A GET of `target` exactly as written (httpx would resolve `..` before sending)."""
    request = s.server.client.build_request("GET", "/", headers=s.headers(key), extensions={"target": target.encode()})
    return s.server.client.send(request)


def test_the_owner_lists_what_the_sessions_tools_wrote(files: Served) -> None:
    """Every regular file, at any depth, with its size and time; the planted link is not listed."""
    response = files.get("/v1/sessions/s1/files", files.alice)
    assert response.status_code == 200, response.text
    listed = {f["path"]: f for f in response.json()["files"]}
    assert sorted(listed) == ["page.html", "reports/q3.md", 'we"ird; é.txt']
    assert listed["reports/q3.md"]["size"] == len(SECRET)
    assert listed["reports/q3.md"]["modified_at"].endswith("Z")
    assert set(listed["page.html"]) == {"path", "size", "modified_at"}


def test_a_download_is_an_inert_attachment(files: Served) -> None:
    """The bytes as written, as application/octet-stream, `attachment`, nosniff and a sandboxing CSP:
    an HTML file the agent wrote cannot run in the server's origin."""
    response = files.get("/v1/sessions/s1/files/page.html", files.alice)
    assert response.status_code == 200
    assert response.text == HTML
    headers = response.headers
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"] == "attachment; filename=\"page.html\"; filename*=UTF-8''page.html"
    assert headers["x-content-type-options"] == "nosniff"
    policy = headers["content-security-policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert headers["cache-control"] == "private, no-store"
    assert files.get("/v1/sessions/s1/files/reports/q3.md", files.alice).text == SECRET


def test_a_hostile_file_name_cannot_change_the_headers(files: Served) -> None:
    """A name with a quote, a semicolon, a space and a non-ASCII letter (the sandbox may make any) is
    downloadable, and sent in the header only sanitised and percent-encoded."""
    response = files.get("/v1/sessions/s1/files/we%22ird%3B%20%C3%A9.txt", files.alice)
    assert response.status_code == 200 and response.text == "odd"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"we_ird___.txt\"; filename*=UTF-8''we%22ird%3B%20%C3%A9.txt"
    )


def test_another_user_gets_404_for_the_session_and_its_files(files: Served) -> None:
    """bob asking for alice's session id sees his own (absent) session: 404 for the list and each file."""
    for path in ["/v1/sessions/s1/files", "/v1/sessions/s1/files/reports/q3.md", "/v1/sessions/b1/files/../s1/x"]:
        response = files.get(path, files.bob)
        CROSS_SCOPE.attempt(response.text, SECRET, f"GET {path} as bob")
        assert response.status_code == 404, response.text
        assert response.json()["error"]["type"] == "not_found"


def test_an_admin_reads_another_users_session_only_by_naming_them(files: Served) -> None:
    """An admin key with `?user_id=alice` lists and downloads; without it the admin's own (absent)
    session is 404; bob naming alice is refused."""
    assert files.get("/v1/sessions/s1/files", files.admin).status_code == 404
    listed = files.get("/v1/sessions/s1/files", files.admin, user_id="alice")
    assert listed.status_code == 200 and len(listed.json()["files"]) == 3
    assert files.get("/v1/sessions/s1/files/reports/q3.md", files.admin, user_id="alice").text == SECRET
    refused = files.get("/v1/sessions/s1/files/reports/q3.md", files.bob, user_id="alice")
    CROSS_SCOPE.attempt(refused.text, SECRET, "bob naming alice as user_id")
    assert refused.status_code == 401


@pytest.mark.parametrize(
    "target",
    [
        "/v1/sessions/s1/files/../../../../etc/passwd",
        "/v1/sessions/s1/files/reports/../../b1/bob.txt",
        "/v1/sessions/s1/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/v1/sessions/s1/files/..%2f..%2f..%2fetc%2fpasswd",
        "/v1/sessions/s1/files//etc/passwd",
        "/v1/sessions/s1/files/%2fetc%2fpasswd",
        "/v1/sessions/s1/files/passwd",
        "/v1/sessions/s1/files/reports",
        "/v1/sessions/s1/files/",
        "/v1/sessions/..%2f..%2f/files/x",
    ],
)
def test_a_hostile_path_is_refused_and_reads_nothing_outside(files: Served, target: str) -> None:
    """`..` raw or encoded, absolute paths, the planted symlink, a folder: 400 or 404 in the
    envelope, never /etc/passwd and never another session's file."""
    response = _raw(files, target, files.alice)
    CROSS_SCOPE.attempt(response.text, "root:x:0:0", f"GET {target}")
    CROSS_SCOPE.attempt(response.text, "bob's", f"GET {target}")
    assert response.status_code in (400, 404), (response.status_code, response.text)
    assert set(response.json()["error"]) == {"type", "message"}


def test_deleting_the_session_deletes_its_files(files: Served) -> None:
    """After DELETE /v1/sessions/b1 its folder is gone from the disk, its listing is empty and a new
    run in b1 finds nothing; alice's session keeps hers."""
    folder = files.workspace / scope_folder("session", "bob", "b1")
    assert (folder / "bob.txt").is_file()
    assert files.server.client.delete("/v1/sessions/b1", headers=files.headers(files.bob)).status_code == 204
    assert not folder.exists()
    assert files.get("/v1/sessions/b1/files", files.bob).json() == {"files": []}
    answer = files.call(files.bob, "b1", "read_file", {"path": "bob.txt"})
    assert "does not exist" in answer
    assert files.get("/v1/sessions/b1/files", files.bob).json() == {"files": []}
    assert len(files.get("/v1/sessions/s1/files", files.alice).json()["files"]) == 3
