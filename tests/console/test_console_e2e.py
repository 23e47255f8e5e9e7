"""The built-in console in a real headless Chromium against a real `agentkeep serve` and the mock model.

Every test ends with `assert_clean()`: no browser console error, no uncaught exception, and no request
anywhere but the server on 127.0.0.1. Each view's screenshot is written under the test's tmp folder.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentkeep import __version__
from agentkeep.testing.mock_llm import Reply
from agentkeep.tools.scope import scope_folder
from tests.console.browser import ConsolePage, require_browser
from tests.console.conftest import REPLY_COST, Console, priced

require_browser()

OpenPage = Callable[..., ConsolePage]


def _partial_texts(page: ConsolePage, selector: str, final: str, timeout: float = 20) -> list[str]:
    """Every distinct text `selector` shows until it reads `final`: more than one means it streamed."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = page.page.evaluate(
            "(s) => { const el = document.querySelector(s); return el ? el.textContent : ''; }", selector
        )
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        if text == final:
            return seen
        time.sleep(0.03)
    raise AssertionError(f"{selector} never read {final!r}; saw {seen}")


def test_login_then_a_streamed_answer_with_its_tool_call(console: Console, open_page: OpenPage) -> None:
    """The key form comes first; the answer arrives token by token with the tool call shown inline;
    the next message continues the same session; the key sits only in the tab's session storage."""
    page = open_page()
    page.login(console.alice)
    storage = page.storage()
    assert storage["session"] == {"agentkeep.apiKey": console.alice}
    assert storage["local"] == {} and storage["cookies"] == ""
    options = page.page.locator("#agent option")
    options.nth(1).wait_for(state="attached")  # the list arrives from GET /v1/agents after the login
    agents = options.all_inner_texts()
    assert any(a.startswith("assistant") for a in agents) and any(a.startswith("helper") for a in agents)

    final = "two plus three makes five"
    console.mock.enqueue(
        Reply.tool_call("add", {"a": 2, "b": 3}),
        Reply.text(final, chunks=5).with_latency(0, chunk_delay=0.25),
    )
    page.page.fill("#message", "what is 2+3?")
    page.page.press("#message", "Enter")
    tool = page.page.locator(".turn.assistant .tool[data-tool=add]")
    tool.wait_for()
    assert tool.locator(".tool-args").inner_text() == '{"a":2,"b":3}'
    seen = _partial_texts(page, ".turn.assistant .text", final)
    assert len(seen) >= 3, f"the answer did not stream: {seen}"
    assert all(final.startswith(text) for text in seen)
    assert "done" in tool.locator(".tool-state").inner_text()
    page.page.locator(".turn.assistant .meta a").wait_for()
    session_id = page.page.inner_text("#session-id")
    assert session_id != "new"
    page.shot("playground")

    markup = 'and again <img src="/injected.png"> <b>bold?</b>'  # shown as text, never as markup
    page.page.fill("#message", markup)
    page.page.press("#message", "Enter")
    page.page.locator(".turn.assistant .meta a").nth(1).wait_for()
    assert page.page.inner_text("#session-id") == session_id
    metas = page.page.locator(".turn.assistant .meta").all_inner_texts()
    assert " · 2 requests · " in metas[0] and " · 1 request · " in metas[1], metas  # one request, not "1 requests"
    assert page.page.locator(".turn.user .answer").nth(1).inner_text() == markup
    assert page.page.locator("#transcript img, #transcript b").count() == 0
    history = console.get(f"/v1/sessions/{session_id}", console.alice)["messages"]
    assert [m["content"] for m in history if m["role"] == "user"] == ["what is 2+3?", markup]

    page.page.click("#new-session")
    assert page.page.inner_text("#session-id") == "new"
    assert page.page.locator(".turn").count() == 0
    page.page.set_viewport_size({"width": 390, "height": 844})
    page.go("#/runs")
    page.page.locator(".run-row").first.wait_for()
    overflow = page.page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= 390, f"the runs view is wider than a phone: {overflow}px"
    page.shot("runs-phone")
    page.assert_clean()


def test_an_attached_image_is_sent_as_a_binary_part(console: Console, open_page: OpenPage, tmp_path: Path) -> None:
    """Attach a PNG, type a question, send: the model gets the text and the image's bytes, the
    transcript shows the picture, and the session lists it as a binary part without its data."""
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    )
    (tmp_path / "dot.png").write_bytes(png)
    console.mock.enqueue(priced("a single dot"))
    page = open_page()
    page.login(console.alice)
    page.page.set_input_files("#image", str(tmp_path / "dot.png"))
    assert page.page.inner_text("#attached") == "dot.png"
    page.page.fill("#message", "what is this?")
    page.page.press("#message", "Enter")
    page.page.locator(".turn.assistant .meta a").wait_for()
    assert page.page.locator(".turn.user img.attachment").get_attribute("alt") == "dot.png"
    assert page.page.inner_text("#attached") == ""
    sent = [m for m in console.mock.requests[-1]["messages"] if m["role"] == "user"][-1]["content"]
    encoded = base64.b64encode(png).decode()
    assert sent == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
    ]
    session = console.get(f"/v1/sessions/{page.page.inner_text('#session-id')}", console.alice)
    assert session["messages"][0]["parts"] == [{"type": "binary", "media_type": "image/png"}]
    page.shot("playground-image")
    page.assert_clean()


def test_the_run_page_shows_its_timeline_and_messages(console: Console, open_page: OpenPage) -> None:
    """A run with a tool call: the list links to it; its page shows model request, tool call, model
    request in order, each with its latency, and the run's messages."""
    console.mock.enqueue(Reply.tool_call("add", {"a": 4, "b": 5}), priced("nine"))
    result = console.run(console.alice, message="what is 4+5?")
    assert result.status_code == 200, result.text
    run_id = result.json()["run_id"]

    page = open_page()
    page.login(console.alice)
    page.go("#/runs")
    row = page.page.locator(f".run-row[data-run-id='{run_id}']")
    row.wait_for()
    assert "succeeded" in row.inner_text() and "alice" in row.inner_text() and "$0.03" in row.inner_text()
    page.shot("runs")
    row.click()
    steps = page.page.locator("#timeline .step")
    steps.nth(2).wait_for()
    assert [steps.nth(i).get_attribute("data-kind") for i in range(steps.count())] == [
        "model_request",
        "tool_call",
        "model_request",
    ]
    assert steps.nth(1).locator(".name").inner_text() == "add"
    assert all(steps.nth(i).locator(".dur").inner_text().endswith(("ms", "s")) for i in range(3))
    messages = page.page.locator(".messages .message")
    assert messages.first.inner_text().endswith("what is 4+5?")
    assert "nine" in page.page.locator(".messages").inner_text()
    assert page.page.locator("#cancel-run").is_hidden()
    assert "null" not in page.page.inner_text(".run-details")
    page.shot("run")
    page.page.click("[data-session]")  # continue this run's session in the playground
    page.page.locator(".turn.note").wait_for()
    assert page.page.inner_text("#session-id") == result.json()["session_id"]
    page.assert_clean()


def test_a_background_run_is_watched_then_cancelled_from_its_page(console: Console, open_page: OpenPage) -> None:
    """Run in the background: the status goes to running in the playground; the run's page cancels it."""
    console.mock.enqueue(Reply.text("far too late").with_latency(30))
    page = open_page()
    page.login(console.alice)
    page.page.check("#background")
    page.page.fill("#message", "take your time")
    page.page.press("#message", "Enter")
    card = page.page.locator(".turn.background")
    card.locator(".badge[data-status=running]").wait_for()
    page.shot("playground-background")
    run_id = card.get_attribute("data-run-id")
    card.locator(f"a[href='#/runs/{run_id}']").click()
    page.page.locator("#run-status .badge[data-status=running]").wait_for()
    page.page.click("#cancel-run")
    page.page.locator("#run-status .badge[data-status=cancelled]").wait_for()
    page.page.locator("#run-error").wait_for()
    assert "cancelled" in page.page.inner_text("#run-error")
    assert console.get(f"/v1/runs/{run_id}", console.alice)["status"] == "cancelled"
    page.shot("run-cancelled")
    page.go("#/playground")
    card.locator(".badge[data-status=cancelled]").wait_for()
    page.assert_clean()


def test_spend_rises_on_the_usage_view(console: Console, open_page: OpenPage) -> None:
    """A priced run made in the playground shows up in today's spend, the hourly chart and the breakers."""
    page = open_page()
    page.login(console.alice)
    page.go("#/usage")
    spent = page.page.locator("#spent-today")
    spent.wait_for()
    before = float(spent.get_attribute("data-usd") or "nan")
    assert page.page.locator("#hourly-chart rect.bar").count() == 24
    assert page.page.inner_text("#version") == __version__
    assert page.page.inner_text("#health-status") == "healthy"

    console.mock.enqueue(priced("counted"))
    page.go("#/playground")
    page.page.fill("#message", "spend a little")
    page.page.press("#message", "Enter")
    page.page.locator(".turn.assistant .meta a").wait_for()
    page.go("#/usage")
    page.page.wait_for_function(
        "(b) => Number(document.querySelector('#spent-today')?.dataset.usd) > b + 0.001", arg=before
    )
    after = float(page.page.get_attribute("#spent-today", "data-usd") or "nan")
    assert after == pytest.approx(before + REPLY_COST)
    last_hour = page.page.locator("#hourly-chart rect.bar").last
    assert float(last_hour.get_attribute("data-cost") or 0) >= REPLY_COST - 1e-9
    assert "mock" in page.page.inner_text("#breakers") and "closed" in page.page.inner_text("#breakers")
    page.shot("usage")
    page.assert_clean()


def test_another_users_runs_are_absent_from_the_list(console: Console, open_page: OpenPage) -> None:
    """Bob's run is not in Alice's list, and Alice's is not in Bob's: each key sees its own user's runs."""
    bob_run = console.run(console.bob, message="bob's private question").json()["run_id"]
    alice_run = console.run(console.alice, message="alice's question").json()["run_id"]

    alice = open_page()
    alice.login(console.alice)
    alice.go("#/runs")
    alice.page.locator(f".run-row[data-run-id='{alice_run}']").wait_for()
    assert alice.page.locator(f".run-row[data-run-id='{bob_run}']").count() == 0
    assert "bob" not in alice.page.inner_text("#runs-body")
    alice.shot("runs-alice")

    bob = open_page()
    bob.login(console.bob)
    bob.go("#/runs")
    bob.page.locator(f".run-row[data-run-id='{bob_run}']").wait_for()
    assert bob.page.locator(".run-row").count() == 1
    bob.shot("runs-bob")
    alice.assert_clean()
    bob.assert_clean()


def test_an_admin_sees_every_users_runs_and_can_open_them(console: Console, open_page: OpenPage) -> None:
    """An admin key lists both users' runs, filters by user, and opens another user's run page."""
    bob_run = console.run(console.bob, message="bob asks the admin").json()["run_id"]
    alice_run = console.run(console.alice, message="alice asks the admin").json()["run_id"]
    page = open_page()
    page.login(console.admin)
    page.go("#/runs")
    page.page.locator(f".run-row[data-run-id='{alice_run}']").wait_for()
    page.page.locator(f".run-row[data-run-id='{bob_run}']").wait_for()
    page.page.fill("#run-filters input[name=user_id]", "bob")
    page.page.click("#run-filters button[type=submit]")
    # The filter re-renders the list: wait for the new rows, not just for alice's to go.
    page.page.wait_for_function(
        f"() => !document.querySelector(\".run-row[data-run-id='{alice_run}']\")"
        f" && document.querySelector(\".run-row[data-run-id='{bob_run}']\")"
    )
    users = page.page.locator(".run-row .col-user").all_inner_texts()
    assert users and set(users) == {"bob"}
    page.shot("runs-admin")
    page.page.click(f".run-row[data-run-id='{bob_run}']")
    page.page.locator("#timeline .step").first.wait_for()
    assert "bob asks the admin" in page.page.inner_text(".messages")
    page.shot("run-admin")
    assert page.page.locator("[data-session]").count() == 0  # bob's session is not the admin's to continue
    page.assert_clean()


def test_a_user_filter_without_an_admin_key_is_refused_in_place(console: Console, open_page: OpenPage) -> None:
    """Alice asking for Bob's runs gets the server's reason in the banner and stays signed in."""
    page = open_page()
    page.login(console.alice)
    page.go("#/runs?user_id=bob")
    page.page.locator("#banner").wait_for()
    assert "admin key" in page.page.inner_text("#banner")
    assert page.storage()["session"] == {"agentkeep.apiKey": console.alice}
    assert page.page.locator("#login").is_hidden()
    assert all("401" in error for error in page.errors), page.errors
    page.errors.clear()
    page.assert_clean()


def test_a_refused_key_keeps_the_form_up_with_the_servers_reason(console: Console, open_page: OpenPage) -> None:
    """A wrong key is not kept: the form stays with the 401's message; nothing is shown behind it."""
    page = open_page()
    page.open()
    page.page.locator("#login-form").wait_for()
    page.page.fill("#api-key", "ak_nope_nope")
    page.page.click("#login-form button[type=submit]")
    page.page.locator("#login-error").wait_for()
    assert "API key" in page.page.inner_text("#login-error")
    assert page.storage()["session"] == {}
    assert page.page.locator("#view").inner_text() == ""
    page.shot("login-refused")
    # The browser itself logs the refused request; that one line is the only error allowed here.
    assert all("401" in error for error in page.errors), page.errors
    page.errors.clear()
    page.assert_clean()


def test_the_run_page_lists_the_sessions_files_and_downloads_one(console: Console, open_page: OpenPage) -> None:
    """The files in a run's session are listed on its page; a click downloads the file as written,
    fetched with the tab's key (a plain link could not send it); an HTML file arrives as a file,
    never rendered in the console's origin."""
    result = console.run(console.alice, message="write me a report", session_id="filed")
    assert result.status_code == 200, result.text
    folder = console.server.workdir / "data" / "workspace" / scope_folder("session", "alice", "filed")
    (folder / "reports").mkdir(parents=True)
    (folder / "reports" / "q3 summary.md").write_text("# Q3\nup and to the right\n")
    (folder / "page.html").write_text("<script>document.title = 'ran'</script>")

    page = open_page()
    page.login(console.alice)
    page.go(f"#/runs/{result.json()['run_id']}")
    rows = page.page.locator("#session-files .file-row")
    rows.nth(1).wait_for()
    names = [rows.nth(i).locator("a").inner_text() for i in range(rows.count())]
    assert names == ["page.html", "reports/q3 summary.md"]
    assert "25 B" in rows.nth(1).inner_text()
    page.shot("run-files")
    with page.page.expect_download() as report:
        page.page.click("#session-files a[data-path='reports/q3 summary.md']")
    assert report.value.suggested_filename == "q3 summary.md"
    assert Path(report.value.path()).read_text() == "# Q3\nup and to the right\n"
    with page.page.expect_download() as html:
        page.page.click("#session-files a[data-path='page.html']")
    assert Path(html.value.path()).read_text() == "<script>document.title = 'ran'</script>"
    assert page.page.title() != "ran"
    page.assert_clean()
