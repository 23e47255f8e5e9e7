"""The shutdown machinery in process: GracefulServer's order of events, and no silent task deaths."""

from __future__ import annotations

import asyncio
import signal

import httpx
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from agentkeep.config import Settings
from agentkeep.resilience.shutdown import GracefulServer
from agentkeep.server.state import AppState
from tests.resilience.conftest import eventually
from tests.support.server import free_port


class Target:
    """A Drainable that records what the server asked of it, and whether it still served meanwhile."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.release = asyncio.Event()

    def begin_drain(self) -> None:
        self.events.append("begin_drain")

    async def drain(self, timeout: float) -> None:
        self.events.append(f"drain {timeout:g}")
        await self.release.wait()
        self.events.append("drained")


async def _ok(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _serving(target: Target) -> tuple[GracefulServer, asyncio.Task[None], str]:
    port = free_port()
    config = uvicorn.Config(
        Starlette(routes=[Route("/", _ok)]), host="127.0.0.1", port=port, log_config=None, lifespan="off"
    )
    server = GracefulServer(config, target, drain_timeout_s=7)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started)
    return server, task, f"http://127.0.0.1:{port}"


async def test_a_signal_drains_while_still_listening_then_stops_with_status_0() -> None:
    """SIGTERM: begin_drain at once, the socket still answers during the drain, then the server
    stops; exit status 0 and the signal is not re-raised (uvicorn's default would kill the process)."""
    target = Target()
    server, task, url = await _serving(target)
    server.handle_exit(signal.SIGTERM, None)
    assert target.events == ["begin_drain"]  # synchronously, from the handler

    async def draining() -> bool:
        return "drain 7" in target.events

    await eventually(draining)
    async with httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 200  # still accepting during the drain
    assert not task.done()
    target.release.set()
    await asyncio.wait_for(task, 10)
    assert target.events == ["begin_drain", "drain 7", "drained"]
    assert server.exit_code == 0


async def test_a_fatal_error_drains_and_exits_with_status_1() -> None:
    """A task the process cannot live without failed: drain as for a signal, then exit 1."""
    target = Target()
    target.release.set()
    server, task, _ = await _serving(target)
    server.fatal(RuntimeError("the poller died"))
    await asyncio.wait_for(task, 10)
    assert target.events == ["begin_drain", "drain 7", "drained"]
    assert server.exit_code == 1


async def test_an_exception_escaping_a_background_task_is_logged() -> None:
    """A spawned task that raises is logged with its exception, never silently dropped."""
    state = AppState(Settings(_env_file=None))  # type: ignore[call-arg]

    async def boom() -> None:
        raise ValueError("lost in the background")

    with structlog.testing.capture_logs() as logs:
        task = state.spawn(boom())
        await asyncio.wait({task})
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    failures = [entry for entry in logs if entry["event"] == "background_task_failed"]
    assert len(failures) == 1
    assert isinstance(failures[0]["exc_info"], ValueError)
    assert failures[0]["critical"] is False


async def test_a_critical_task_failing_ends_the_process() -> None:
    """A task spawned `critical` that raises reaches `on_fatal` (GracefulServer.fatal in `serve`)."""
    fatal: list[BaseException] = []
    state = AppState(Settings(_env_file=None), on_fatal=fatal.append)  # type: ignore[call-arg]

    async def boom() -> None:
        raise ConnectionError("the database is gone")

    task = state.spawn(boom(), critical=True)
    await asyncio.wait({task})
    await asyncio.sleep(0)
    assert len(fatal) == 1 and isinstance(fatal[0], ConnectionError)


async def test_a_cancelled_task_is_not_an_error() -> None:
    """Cancellation (a drain ending a task) is not logged as a failure."""
    state = AppState(Settings(_env_file=None))  # type: ignore[call-arg]
    with structlog.testing.capture_logs() as logs:
        task = state.spawn(asyncio.sleep(3600))
        task.cancel()
        await asyncio.wait({task})
        await asyncio.sleep(0)
    assert [entry for entry in logs if entry["event"] == "background_task_failed"] == []
