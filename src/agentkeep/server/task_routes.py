"""The task route, `POST /v1/tasks/{name}`: submit a multi-step task, polled like a run.

The tasks themselves (`@task`, `@step`, `ask()`) and how they run are `agentkeep.durable.tasks`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from agentkeep.api_models import ERROR_RESPONSES, RunAcceptedOut, TaskCreate
from agentkeep.server.routes import State, User

__all__ = ["router"]

router = APIRouter()


@router.post(
    "/v1/tasks/{name}",
    status_code=202,
    response_model=RunAcceptedOut,
    responses=ERROR_RESPONSES,
    summary="Run a multi-step task in the background",
)
async def create_task(name: str, body: TaskCreate, state: State, user: User) -> Any:
    engine = state.background()
    if body.webhook_url is not None:
        engine.webhooks.check(body.webhook_url)
    record = await engine.submit_task(name, body.input, user, body.webhook_url)
    accepted = {"run_id": record.run_id, "session_id": record.session_id, "status": "queued"}
    return JSONResponse(accepted, status_code=202, headers={"Location": f"/v1/runs/{record.run_id}"})
