"""The console with agents that wait for decisions and answer with structured output, in headless Chromium.

A pending tool call shows with its arguments and Approve / Deny; approving resumes the run in place
(streamed); a response the agent discards disappears from the transcript; a structured output is shown
as JSON. Each test ends with `assert_clean()` (no browser error, no request off the server).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkeep.testing.mock_llm import MockLLM, Reply, ToolCall
from tests.console.browser import ConsolePage, require_browser
from tests.server.conftest import server_env
from tests.support.cli import make_key
from tests.support.server import AGENTS_DIR, ServerProcess

require_browser()

DELETE = Reply.tool_call("delete_file", {"path": "notes.txt"}, id="call_del")


class Served:
    def __init__(self, server: ServerProcess, mock: MockLLM, key: str, workdir: Path) -> None:
        self.server, self.mock, self.key, self.workdir = server, mock, key, workdir

    def effects(self) -> list[str]:
        side = self.workdir / "side.txt"
        return [" ".join(line.split()[:2]) for line in side.read_text().splitlines()] if side.exists() else []


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("console-approvals")
    url = f"sqlite:///{tmp / 'agentkeep.db'}"
    key = make_key(url, "alice")
    with MockLLM() as mock:
        env = server_env(
            mock,
            url,
            AGENTKEEP_AUTH="required",
            AGENTKEEP_RATE_LIMIT="100000/minute",
            SIDE_EFFECT_FILE=str(tmp / "side.txt"),
        )
        with ServerProcess(str(AGENTS_DIR / "console_agent.py"), tmp, env=env) as server:
            yield Served(server, mock, key, tmp)


@pytest.fixture
def open_page(chromium: Any, served: Served, tmp_path: Path) -> Iterator[Callable[[], ConsolePage]]:
    contexts: list[Any] = []

    def make() -> ConsolePage:
        context = chromium.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = ConsolePage(context.new_page(), served.server.url, tmp_path / "screenshots")
        page.login(served.key)
        page.page.locator("#agent option[value=plain]").wait_for(state="attached")
        return page

    yield make
    for context in contexts:
        context.close()


def _send(page: ConsolePage, agent: str, message: str) -> None:
    page.page.select_option("#agent", agent)
    page.page.fill("#message", message)
    page.page.press("#message", "Enter")


def test_a_pending_call_is_approved_in_the_playground_and_the_run_goes_on_in_place(
    served: Served, open_page: Callable[[], ConsolePage]
) -> None:
    """The call shows its name and args with Approve / Deny and the tool has not run; Approve resumes
    the same turn: the call turns done, the answer streams in, and the tool ran once."""
    served.mock.enqueue(DELETE, Reply.text("notes.txt is gone", chunks=3))
    page = open_page()
    _send(page, "plain", "delete notes.txt")
    waiting = page.page.locator(".turn.assistant .pending .tool.waiting[data-call=call_del]")
    waiting.wait_for()
    assert waiting.locator(".tool-args").inner_text() == '{"path":"notes.txt"}'
    assert served.effects() == []
    page.shot("pending")
    waiting.locator("button.approve").click()
    page.page.locator(".turn.assistant .meta a").wait_for()
    turn = page.page.locator(".turn.assistant")
    assert turn.count() == 1 and "notes.txt is gone" in turn.locator(".text").inner_text()
    assert turn.locator(".tool.done[data-call=call_del]").count() == 1
    assert served.effects() == ["delete_file notes.txt"]
    page.shot("approved")
    page.assert_clean()


def test_a_denied_call_never_runs_and_the_session_takes_the_next_message(
    served: Served, open_page: Callable[[], ConsolePage]
) -> None:
    """Deny resumes the run with the call denied; the tool never runs; the next message works."""
    before = served.effects()
    served.mock.enqueue(DELETE, Reply.text("kept it"), Reply.text("anything else"))
    page = open_page()
    _send(page, "files", "delete notes.txt")
    page.page.locator(".pending button.deny").click()
    page.page.locator(".turn.assistant .meta a").wait_for()
    assert page.page.locator(".turn.assistant .text").inner_text() == "kept it"
    _send(page, "files", "thanks")
    page.page.locator(".turn.assistant .meta a").nth(1).wait_for()
    assert served.effects() == before
    denied = [m for m in served.mock.requests[-2]["messages"] if m["role"] == "tool"]
    assert denied and denied[0]["tool_call_id"] == "call_del"
    page.assert_clean()


def test_the_run_page_of_a_waiting_run_lists_its_calls_and_approves_them(
    served: Served, open_page: Callable[[], ConsolePage]
) -> None:
    """A run waiting from the API: its page shows the pending call; Approve resumes it and the page
    then shows it succeeded, with its output."""
    served.mock.enqueue(DELETE, Reply.text("done from the run page"))
    headers = {"Authorization": f"Bearer {served.key}"}
    started = served.server.client.post("/v1/runs", json={"message": "delete", "agent": "checked"}, headers=headers)
    run_id = started.json()["run_id"]
    page = open_page()
    page.go(f"#/runs/{run_id}")
    page.page.locator("#run-status .badge[data-status=waiting_approval]").wait_for()
    page.page.locator("#run-pending .tool[data-call=call_del]").wait_for()
    page.shot("run-waiting")
    page.page.click("#run-pending button.approve")
    page.page.locator("#run-status .badge[data-status=succeeded]").wait_for()
    assert "done from the run page" in page.page.inner_text(".run-details")
    page.assert_clean()


def test_a_discarded_answer_leaves_the_transcript_and_a_structured_output_shows_as_json(
    served: Served, open_page: Callable[[], ConsolePage]
) -> None:
    """The writer's draft is streamed, then taken off at model.retry, leaving only the final answer;
    the City agent's output is shown as JSON."""
    served.mock.enqueue(Reply.text("draft: maybe").with_latency(0, chunk_delay=0.1), Reply.text("final: yes"))
    page = open_page()
    _send(page, "writer", "decide")
    page.page.locator(".turn.assistant .meta a").wait_for()
    turn = page.page.locator(".turn.assistant").last
    assert turn.locator(".text").all_inner_texts() == ["final: yes"]
    assert turn.locator(".retried").count() == 1

    city = {"name": "Lyon", "population": 522250, "tags": ["river"]}
    served.mock.enqueue(Reply.tool_calls(ToolCall("final_result", city), chunks=4))
    _send(page, "city", "Lyon?")
    page.page.locator(".turn.assistant .meta a").nth(1).wait_for()
    shown = page.page.locator(".turn.assistant").last.locator(".output-json")
    assert shown.count() == 1 and json.loads(shown.inner_text()) == city
    page.shot("structured")
    page.assert_clean()
