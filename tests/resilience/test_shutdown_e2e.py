"""Graceful shutdown of a real `agentkeep serve`: real signals, real HTTP, the scripted model server."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.resilience.conftest import eventually
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.server import ServerProcess

DRAIN_TIMEOUT_S = 30
IN_FLIGHT = 50


def _env(mock: MockLLM, tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {"AGENTKEEP_RATE_LIMIT": "100000/minute", "AGENTKEEP_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S)}
    return server_env(mock, f"sqlite:///{tmp_path / 'agentkeep.db'}", **{**base, **extra})


def _events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def _sync_run(client: httpx.AsyncClient, **body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/runs", json={"message": "hello", **body})
    return response.status_code, response.json()


async def _streamed_run(client: httpx.AsyncClient, **body: Any) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
    async with client.stream("POST", "/v1/runs", json={"message": "hello", "stream": True, **body}) as response:
        text = "".join([chunk async for chunk in response.aiter_text()])
    return response.status_code, _events(text) if response.status_code == 200 else []


async def _until_model_has(mock: MockLLM, count: int) -> None:
    async def reached() -> bool:
        return mock.request_count >= count

    await eventually(reached, timeout=30)


async def test_sigterm_under_load_finishes_every_in_flight_run_and_exits_0(tmp_path: Path) -> None:
    """50 runs in flight (half streamed, 1-2 s each) when SIGTERM arrives: all 50 complete with 200,
    /ready and new runs answer 503 at once, and the process exits 0 well before the drain timeout."""
    replies = [Reply.text(f"answer {i}", chunks=3).with_latency(1 + i / IN_FLIGHT) for i in range(IN_FLIGHT)]
    with MockLLM(replies) as mock, ServerProcess(MOCK_AGENT, tmp_path, env=_env(mock, tmp_path)) as server:
        limits = httpx.Limits(max_connections=IN_FLIGHT + 10)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
            sync = [asyncio.create_task(_sync_run(client)) for _ in range(IN_FLIGHT // 2)]
            streamed = [asyncio.create_task(_streamed_run(client)) for _ in range(IN_FLIGHT // 2)]
            await _until_model_has(mock, IN_FLIGHT)
            signalled = time.monotonic()
            server.signal(signal.SIGTERM)

            async def not_ready() -> bool:
                return (await client.get("/ready")).status_code == 503

            await eventually(not_ready, timeout=2)
            assert (await client.get("/ready")).json() == {"ready": False, "reason": "draining"}
            late_status, late = await _sync_run(client)
            assert late_status == 503 and late["error"]["type"] == "draining"

            for status, result in await asyncio.gather(*sync):
                assert status == 200 and result["status"] == "succeeded", result
            for status, events in await asyncio.gather(*streamed):
                assert status == 200
                assert [name for name, _ in events].count("run.completed") == 1, events
        assert await asyncio.to_thread(server.wait_exit, DRAIN_TIMEOUT_S) == 0, server.output()
        assert time.monotonic() - signalled < DRAIN_TIMEOUT_S
        assert mock.request_count == IN_FLIGHT  # the late run never reached the model


async def test_sigint_drains_like_sigterm(tmp_path: Path) -> None:
    """Ctrl+C is a graceful stop too: the run in flight finishes, then exit 0."""
    mock = MockLLM([Reply.text("done").with_latency(1.0)])
    with mock, ServerProcess(MOCK_AGENT, tmp_path, env=_env(mock.start(), tmp_path)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            run = asyncio.create_task(_sync_run(client))
            await _until_model_has(mock, 1)
            server.signal(signal.SIGINT)
            status, result = await run
        assert status == 200 and result["output"] == "done"
        assert await asyncio.to_thread(server.wait_exit, DRAIN_TIMEOUT_S) == 0


async def test_runs_still_going_at_the_drain_timeout_are_interrupted_and_recorded(tmp_path: Path) -> None:
    """Past AGENTKEEP_DRAIN_TIMEOUT_S the rest is cancelled: a sync caller gets 503 `interrupted`, a
    stream gets `run.failed`; the runs are recorded `interrupted`, their sessions free for the next run;
    the process still exits 0."""
    with MockLLM(default=Reply.text("too slow").with_latency(60)) as mock:
        env = _env(mock, tmp_path, AGENTKEEP_DRAIN_TIMEOUT_S="1")
        with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                sync = asyncio.create_task(_sync_run(client, session_id="sync-session"))
                streamed = asyncio.create_task(_streamed_run(client, session_id="stream-session"))
                await _until_model_has(mock, 2)
                server.signal(signal.SIGTERM)
                sync_status, sync_body = await sync
                stream_status, events = await streamed
            assert await asyncio.to_thread(server.wait_exit, 30) == 0, server.output()
        assert sync_status == 503 and sync_body["error"]["type"] == "interrupted"
        assert stream_status == 200
        assert events[0][0] == "run.started" and events[-1][0] == "run.failed"
        assert events[-1][1]["error"]["type"] == "interrupted"
        run_id = events[0][1]["run_id"]

        mock.set_default(Reply.text("fresh start"))
        with ServerProcess(MOCK_AGENT, tmp_path, env=_env(mock, tmp_path)) as restarted:
            assert restarted.client.get(f"/v1/runs/{run_id}").json()["status"] == "interrupted"
            for session in ("sync-session", "stream-session"):
                again = restarted.post_run(message="again", session_id=session)
                assert again.status_code == 200, again.text
                roles = [m["role"] for m in restarted.client.get(f"/v1/sessions/{session}").json()["messages"]]
                assert roles == ["user", "assistant"]  # nothing of the interrupted run was half-written


async def test_a_second_signal_exits_at_once_with_a_failure_status(tmp_path: Path) -> None:
    """The operator insists: the second SIGTERM ends the process now, not after the drain, non-zero."""
    mock = MockLLM(default=Reply.text("slow").with_latency(60))
    with mock, ServerProcess(MOCK_AGENT, tmp_path, env=_env(mock.start(), tmp_path)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            run = asyncio.create_task(_sync_run(client))
            await _until_model_has(mock, 1)
            server.signal(signal.SIGTERM)

            async def draining() -> bool:
                return (await client.get("/ready")).status_code == 503

            await eventually(draining, timeout=5)
            server.signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.wait_exit, 5)
            run.cancel()
        assert code == 128 + signal.SIGTERM
