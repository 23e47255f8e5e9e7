"""What a console lists: `GET /v1/agents` (the served agents), `GET /v1/runs` (a page of runs) and
`GET /v1/runs/{id}/steps` (one run's timeline and the messages it added).

A normal key sees its own user's runs only; an admin key sees every user's and may narrow the list
with `user_id`. A normal key naming another user gets the 401 `GET /v1/usage` gives it, and another
user's run is a 404, as if it did not exist.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from pydantic_ai import Agent
from pydantic_ai.toolsets import FunctionToolset

from agentkeep.api_models import ERROR_RESPONSES, ErrorBody, MessageOut, UsageOut, run_view
from agentkeep.errors import InvalidRequest, Unauthorized
from agentkeep.models import model_label
from agentkeep.runtime import Runtime
from agentkeep.server.routes import State, User, visible_run
from agentkeep.server.usage import caller_is_admin
from agentkeep.stores.base import RunQuery, RunRecord, RunStatus
from agentkeep.transcript import load_chunks, simple_messages

__all__ = ["router"]

router = APIRouter()
Admin = Annotated[bool, Depends(caller_is_admin)]


class AgentOut(BaseModel):
    name: str
    model: str | None = Field(description="The model's name as its provider knows it; never a key or a URL.")
    default: bool = Field(description="Serves runs that name no agent.")
    tools: list[str]


class AgentsOut(BaseModel):
    agents: list[AgentOut]


class RunSummaryOut(BaseModel):
    """A run as a list shows it; `GET /v1/runs/{id}` has its output, `/steps` its timeline."""

    run_id: str
    session_id: str
    user_id: str
    agent: str
    status: str
    background: bool
    usage: UsageOut
    cost_usd: float | None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    error: ErrorBody | None = None


class RunsOut(BaseModel):
    runs: list[RunSummaryOut] = Field(description="Newest first.")
    next: str | None = Field(description="Pass as `before` for the next page; null on the last page.")


class StepOut(BaseModel):
    """One model request or tool call of a run."""

    index: int
    kind: Literal["model_request", "tool_call"]
    name: str = Field(description="The model's name, or the tool's.")
    started_at: float = Field(description="UNIX seconds.")
    duration_ms: float
    outcome: Literal["ok", "error"]
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None


class StepsOut(BaseModel):
    run_id: str
    steps: list[StepOut] = Field(description="In the order they started; so far, for a run still executing.")
    messages: list[MessageOut] = Field(description="The messages this run added, as GET /v1/sessions/{id} shows them.")


@router.get("/v1/agents", response_model=AgentsOut, responses=ERROR_RESPONSES, summary="The agents this server runs")
async def list_agents(state: State, _user: User) -> dict[str, Any]:
    runtime = state.rt
    return {"agents": [_agent_view(runtime, name, agent) for name, agent in runtime.agents.items()]}


def _agent_view(runtime: Runtime, name: str, agent: Agent[Any, Any]) -> dict[str, Any]:
    model = runtime.models[name] or agent.model
    tools = [tool for toolset in agent.toolsets if isinstance(toolset, FunctionToolset) for tool in toolset.tools]
    return {
        "name": name,
        "model": None if model is None else model_label(model),
        "default": name == runtime.default_agent,
        "tools": tools,
    }


@router.get("/v1/runs", response_model=RunsOut, responses=ERROR_RESPONSES, summary="Recorded runs, newest first")
async def list_runs(
    state: State,
    caller: User,
    is_admin: Admin,
    status: Annotated[RunStatus | None, Query(description="Only runs in this status.")] = None,
    agent: Annotated[str | None, Query(max_length=128, description="Only this agent's runs.")] = None,
    user_id: Annotated[
        str | None, Query(max_length=128, description="Only this user's runs (admin keys; others see their own).")
    ] = None,
    session_id: Annotated[str | None, Query(max_length=128, description="Only this session's runs.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Runs per page.")] = 50,
    before: Annotated[str | None, Query(max_length=200, description="The `next` of the previous page.")] = None,
) -> dict[str, Any]:
    if user_id is not None and user_id != caller and not is_admin:
        raise Unauthorized("user_id needs an admin key; without it you see your own runs")
    query = RunQuery(
        user_id=user_id if is_admin else caller,
        status=status,
        agent=agent,
        session_id=session_id,
        limit=limit,
        before=None if before is None else decode_cursor(before),
    )
    records = await state.rt.store.list_runs(query)
    last = records[-1] if len(records) == limit else None
    return {
        "runs": [summary_view(record) for record in records],
        "next": None if last is None else encode_cursor(last.created_at, last.run_id),
    }


@router.get(
    "/v1/runs/{run_id}/steps",
    response_model=StepsOut,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    summary="A run's model requests and tool calls, and the messages it added",
)
async def run_steps(run_id: str, request: Request, state: State, caller: User) -> dict[str, Any]:
    record = await visible_run(request, state, caller, run_id)
    steps = state.started().steps.live(run_id)
    if steps is None:
        steps = json.loads(record.steps_json) if record.steps_json else []
    messages = simple_messages(load_chunks([record.messages_json])) if record.messages_json else []
    return {"run_id": run_id, "steps": steps, "messages": messages}


def summary_view(record: RunRecord) -> dict[str, Any]:
    """The run in the list: `GET /v1/runs/{id}`'s fields and formats, less output, tools and metadata."""
    view = run_view(record)
    for detail in ("output", "tools_used", "metadata"):
        view.pop(detail, None)
    return {**view, "user_id": record.user_id, "background": record.background}


def encode_cursor(created_at: float, run_id: str) -> str:
    """An opaque page cursor: where the last run of a page sits in the newest-first order."""
    return base64.urlsafe_b64encode(f"{created_at!r}|{run_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, run_id = text.split("|", 1)
        return float(created_at), run_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("before is not a cursor from this API: pass the `next` of a previous page") from None
