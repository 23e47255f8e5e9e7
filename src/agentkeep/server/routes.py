"""The contract's routes. Each one translates HTTP to a runtime call and back: no business logic."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
import structlog
from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.responses import JSONResponse, StreamingResponse

from agentkeep import __version__
from agentkeep.api_models import (
    ERROR_RESPONSES,
    HealthOut,
    LiveOut,
    ReadyOut,
    ResumeCreate,
    RunAcceptedOut,
    RunCreate,
    RunOut,
    RunResultOut,
    SessionOut,
    run_view,
)
from agentkeep.errors import InvalidRequest, NotFound, RunFailed
from agentkeep.runtime import PreparedRun, RunEvent, RunRequest, check_session_id
from agentkeep.server.auth import authenticate, bearer_scheme
from agentkeep.server.state import AppState, app_state
from agentkeep.stores.base import RunRecord, RunStatus
from agentkeep.tools import ToolFailure
from agentkeep.tools.files import remove_session_files
from agentkeep.transcript import load_chunks, simple_messages

__all__ = ["State", "User", "current_user", "probes", "router", "visible_run"]

log = structlog.get_logger("agentkeep.server")

router = APIRouter()
probes = APIRouter()  # /health, /live and /ready: served by `agentkeep worker` too
State = Annotated[AppState, Depends(app_state)]


async def current_user(request: Request, _key: Annotated[object, Security(bearer_scheme)]) -> str:
    """The caller's user id: its API key's user (else 401), or the anonymous user with auth off."""
    return await authenticate(request)


User = Annotated[str, Depends(current_user)]

# OpenAPI links from a run's answer to what can be done with it next (clients and fuzzers follow them).
_RUN_LINKS = {
    name: {"operationId": operation, "parameters": {"run_id": "$response.body#/run_id"}}
    for name, operation in {
        "GetRun": "get_run_v1_runs__run_id__get",
        "RunSteps": "run_steps_v1_runs__run_id__steps_get",
        "ResumeRun": "resume_run_v1_runs__run_id__resume_post",
        "CancelRun": "cancel_run_v1_runs__run_id__cancel_post",
    }.items()
}
_RUN_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    200: {"links": _RUN_LINKS},
    202: {"model": RunAcceptedOut, "links": _RUN_LINKS},
}


@router.post(
    "/v1/runs",
    response_model=RunResultOut,
    response_model_exclude_unset=True,  # `pending` only for a run that waits
    responses=_RUN_RESPONSES,
    summary="Run an agent: synchronously, streamed (SSE) or in the background",
)
async def create_run(body: RunCreate, state: State, user: User) -> Any:
    request = RunRequest(
        message=body.message,
        user_id=user,
        session_id=body.session_id,
        agent=body.agent,
        metadata=body.metadata or {},
        background=body.background,
        webhook_url=body.webhook_url,
    )
    if body.webhook_url is not None:
        if not body.background:
            raise InvalidRequest("webhook_url needs background: true; a synchronous run answers its caller directly")
        state.background().webhooks.check(body.webhook_url)
    prepared = await state.rt.prepare(request)
    if body.background:
        await state.background().submit(prepared)
        return _accepted(prepared)
    return await _answer(state, prepared, stream=body.stream)


@router.post(
    "/v1/runs/{run_id}/resume",
    response_model=RunResultOut,
    response_model_exclude_unset=True,
    responses=_RUN_RESPONSES,
    summary="Continue a run that waits for tool decisions, answering like POST /v1/runs",
)
async def resume_run(run_id: str, body: ResumeCreate, request: Request, state: State, user: User) -> Any:
    """Every pending call of the run needs an answer (else 400); a run not waiting is 409 `not_waiting`."""
    record = await visible_run(request, state, user, run_id)
    services = state.started()
    approvals = {
        call_id: answer if isinstance(answer, bool) else answer.model_dump(exclude_none=True)
        for call_id, answer in body.approvals.items()
    }
    prepared = await services.approvals.prepare_resume(record, approvals, body.results, background=body.background)
    if body.background:
        await services.durable.submit_resume(prepared)
        return _accepted(prepared)
    if record.webhook_url is not None:  # a background run continued here: its webhook still hears the end
        return await _answer(state, prepared, stream=body.stream, then=services.durable.announce)
    return await _answer(state, prepared, stream=body.stream)


def _accepted(prepared: PreparedRun) -> JSONResponse:
    record = prepared.record
    accepted = {"run_id": record.run_id, "session_id": record.session_id, "status": "queued"}
    return JSONResponse(accepted, status_code=202, headers={"Location": f"/v1/runs/{record.run_id}"})


async def _answer(
    state: AppState, prepared: PreparedRun, *, stream: bool, then: Callable[[RunRecord], Awaitable[None]] | None = None
) -> Any:
    """Execute a prepared run here: the RunResult, or its event stream; `then` once it has ended."""
    if stream:
        return StreamingResponse(
            _event_stream(_start_streamed_run(state, prepared, then)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        return await state.rt.execute(prepared)
    finally:
        if then is not None:
            await then(prepared.record)


async def _quiet(work: Any) -> None:
    """A background run reports its failure in its record, not as an exception."""
    with contextlib.suppress(RunFailed):
        await work


def _start_streamed_run(
    state: AppState, prepared: PreparedRun, then: Callable[[RunRecord], Awaitable[None]] | None = None
) -> asyncio.Queue[RunEvent | None]:
    """Start the run now, as its own task: a client that disconnects, even before the body starts,
    neither cuts the run in half nor leaves it prepared and never executed."""
    queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()

    async def emit(event: RunEvent) -> None:
        queue.put_nowait(event)

    async def run() -> None:
        try:
            await _quiet(state.rt.execute(prepared, emit))
        finally:
            if then is not None:
                await then(prepared.record)

    task = state.spawn(run())
    task.add_done_callback(lambda _: queue.put_nowait(None))
    return queue


async def _event_stream(queue: asyncio.Queue[RunEvent | None]) -> AsyncIterator[bytes]:
    while (event := await queue.get()) is not None:
        yield f"event: {event.name}\ndata: {json.dumps(event.data, default=str)}\n\n".encode()


async def visible_run(request: Request, state: AppState, user: str, run_id: str) -> RunRecord:
    """The run if the caller may see it: its own, or anyone's for an admin key; else 404 (another
    user's run is indistinguishable from a missing one)."""
    admin = getattr(request.state, "is_admin", False)
    record = await state.rt.store.get_run(None if admin else user, run_id)
    if record is None:
        raise NotFound(f"no run {run_id!r}")
    return record


@router.get("/v1/runs/{run_id}", response_model=RunOut, responses=ERROR_RESPONSES, summary="A recorded run")
async def get_run(run_id: str, request: Request, state: State, user: User) -> Any:
    return run_view(await visible_run(request, state, user, run_id))


@router.post(
    "/v1/runs/{run_id}/cancel",
    response_model=RunOut,
    responses=ERROR_RESPONSES,
    summary="Cancel a background run, or a run waiting for tool decisions",
)
async def cancel_run(run_id: str, request: Request, state: State, user: User) -> Any:
    """Stops the run at its next step boundary; answers with the run as it is after the cancel.

    A waiting run's pending calls are denied in its session, which the next run continues from. A
    finished run, or a synchronous one (its caller holds it), is returned as it is."""
    record = await visible_run(request, state, user, run_id)
    if record.status is RunStatus.WAITING_APPROVAL:
        record = await state.started().approvals.close(record)
    if record.background and not record.status.finished:
        record = await state.background().cancel(record)
    return run_view(record)


@router.get(
    "/v1/sessions/{session_id}",
    response_model=SessionOut,
    responses=ERROR_RESPONSES,
    summary="A session's history",
)
async def get_session(session_id: str, state: State, user: User) -> Any:
    check_session_id(session_id)
    session = await state.rt.store.get_session(user, session_id)
    if session is None:
        raise NotFound(f"no session {session_id!r}")
    return {
        "session_id": session.session_id,
        "messages": simple_messages(load_chunks(session.history_chunks)),
        "cost_usd": session.cost_usd,
        "created_at": _iso(session.created_at),
        "updated_at": _iso(session.updated_at),
    }


@router.delete(
    "/v1/sessions/{session_id}", status_code=204, responses=ERROR_RESPONSES, summary="Delete a session and its files"
)
async def delete_session(session_id: str, state: State, user: User) -> Response:
    check_session_id(session_id)
    if not await state.rt.store.delete_session(user, session_id):
        raise NotFound(f"no session {session_id!r}")
    try:  # its files go with it; what a failing storage keeps, the retention sweep removes later
        await anyio.to_thread.run_sync(remove_session_files, user, session_id, state.rt.settings)
    except ToolFailure as exc:
        log.warning("session.files_not_removed", session_id=session_id, reason=exc.message)
    return Response(status_code=204)


@probes.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut}},
    summary="Health: the database, capacity, draining",
)
async def health(state: State) -> JSONResponse:
    runtime = state.runtime
    checks: dict[str, Any] = {}
    status = "healthy"
    if runtime is None:
        checks["runtime"] = "starting"
        status = "degraded"
    else:
        try:
            async with asyncio.timeout(2):
                await runtime.store.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"failing: {type(exc).__name__}"
            status = "degraded"
        at_cap = runtime.active_runs >= runtime.settings.max_concurrent_runs
        checks["capacity"] = "saturated" if at_cap else "ok"
        if at_cap:
            status = "degraded"
        if runtime.draining:
            status = "draining"
    body = {
        "status": status,
        "uptime_s": round(time.monotonic() - state.started_monotonic, 3),
        "active_runs": runtime.active_runs if runtime else 0,
        "version": __version__,
        "checks": checks,
    }
    return JSONResponse(body, status_code=200 if status == "healthy" else 503)


@probes.get("/live", response_model=LiveOut, summary="Liveness: the process answers")
async def live() -> dict[str, bool]:
    """200 while the process answers requests; it checks no dependency, so a database outage (which
    /health and /ready report) never makes an orchestrator restart every pod."""
    return {"live": True}


@probes.get("/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut}}, summary="Readiness")
async def ready(state: State) -> JSONResponse:
    runtime = state.runtime
    if runtime is not None and runtime.draining:
        return JSONResponse({"ready": False, "reason": "draining"}, status_code=503)
    if not state.ready:
        return JSONResponse({"ready": False, "reason": state.not_ready_reason}, status_code=503)
    return JSONResponse({"ready": True})


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
