"""The HTTP API's request and response bodies, as Pydantic models so OpenAPI describes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentkeep.parts import Part
from agentkeep.stores.base import RunRecord, RunStatus

__all__ = [
    "ERROR_RESPONSES",
    "ApprovalDecision",
    "ErrorBody",
    "ErrorOut",
    "HealthOut",
    "LiveOut",
    "MessageOut",
    "PendingOut",
    "ReadyOut",
    "ResumeCreate",
    "RunAcceptedOut",
    "RunCreate",
    "RunOut",
    "RunResultOut",
    "SessionOut",
    "TaskCreate",
    "UsageOut",
    "run_result",
    "run_view",
]


class RunCreate(BaseModel):
    """Body of `POST /v1/runs`."""

    model_config = ConfigDict(extra="forbid")

    message: str | list[Part] = Field(
        description=(
            "The user's message: text, or a list of parts (text, an image, document or audio file by http(s) URL, "
            "or inline as base64). Control characters are removed from text and it is trimmed; a URL must reach "
            "a public address; files are image/png, image/jpeg, image/gif, image/webp, application/pdf, "
            "text/plain, audio/wav or audio/mpeg, together at most AGENTKEEP_MAX_BODY_BYTES decoded."
        )
    )
    session_id: str | None = Field(
        None, description="Continue this session (`[A-Za-z0-9._:-]{1,128}`); absent → a new one."
    )
    agent: str | None = Field(None, description="Which agent, when the server has several.")
    stream: bool = Field(False, description="Answer as a `text/event-stream` of run events.")
    background: bool = Field(False, description="Queue the run and answer 202 at once.")
    webhook_url: str | None = Field(None, description="Receives the finished run by POST (background runs).")
    metadata: dict[str, Any] | None = Field(None, description="Stored with the run, returned as given.")


class ApprovalDecision(BaseModel):
    """A decision on one tool call, when `true` / `false` is not enough."""

    model_config = ConfigDict(extra="forbid")

    approved: bool
    message: str | None = Field(None, max_length=2000, description="Denied: what the model is told instead.")
    args: dict[str, Any] | None = Field(None, description="Approved: the arguments the tool runs with instead.")


class ResumeCreate(BaseModel):
    """Body of `POST /v1/runs/{run_id}/resume`: an answer for every pending call of the run."""

    model_config = ConfigDict(extra="forbid")

    approvals: dict[str, bool | ApprovalDecision] = Field(
        default_factory=dict, description="Per `tool_call_id` of an `approval` call: run it (or not)."
    )
    results: dict[str, Any] = Field(
        default_factory=dict, description="Per `tool_call_id` of an `external` call: its result, any JSON value."
    )
    stream: bool = Field(False, description="Answer as a `text/event-stream` of run events.")
    background: bool = Field(False, description="Queue the rest of the run and answer 202 at once.")


class TaskCreate(BaseModel):
    """Body of `POST /v1/tasks/{name}`."""

    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] = Field(default_factory=dict, description="Handed to the task's function.")
    webhook_url: str | None = Field(None, description="Receives the finished run by POST.")


class UsageOut(BaseModel):
    requests: int
    input_tokens: int
    output_tokens: int
    tool_calls: int


_OUTPUT = "The agent's output as JSON: a string for a text agent, the object (array, number, …) of a structured one."


class PendingOut(BaseModel):
    """A tool call that waits for a decision (`approval`) or for its result from outside (`external`)."""

    tool_call_id: str
    tool_name: str
    args: dict[str, Any]
    kind: Literal["approval", "external"]


class RunResultOut(BaseModel):
    """A synchronous run that finished, or that waits for decisions on tool calls (`pending`)."""

    run_id: str
    session_id: str
    status: Literal["succeeded", "waiting_approval"]
    output: Any = Field(description=_OUTPUT + " Null while the run waits.")
    tools_used: list[str]
    usage: UsageOut
    cost_usd: float | None
    duration_ms: float
    pending: list[PendingOut] | None = Field(None, description="While it waits: the calls to answer by resuming it.")


class RunAcceptedOut(BaseModel):
    """A background run, accepted."""

    run_id: str
    session_id: str
    status: Literal["queued"]


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorOut(BaseModel):
    """Every error, from every route."""

    error: ErrorBody


class RunOut(BaseModel):
    """A recorded run."""

    run_id: str
    session_id: str
    agent: str
    status: str
    output: Any = Field(None, description=_OUTPUT)
    pending: list[PendingOut] | None = Field(None, description="While it waits: the calls to answer by resuming it.")
    error: ErrorBody | None = None
    usage: UsageOut
    cost_usd: float | None
    tools_used: list[str]
    metadata: dict[str, Any]
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None


class MessageOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant", "tool"]
    content: str


class SessionOut(BaseModel):
    session_id: str
    messages: list[MessageOut]
    cost_usd: float | None
    created_at: str
    updated_at: str


class HealthOut(BaseModel):
    status: Literal["healthy", "degraded", "draining"]
    uptime_s: float
    active_runs: int
    version: str
    checks: dict[str, Any]


class LiveOut(BaseModel):
    live: bool


class ReadyOut(BaseModel):
    ready: bool
    reason: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": description}
    for code, description in {
        400: "Invalid request",
        401: "Missing or unknown API key",
        402: "Budget exceeded or price unknown",
        404: "Not found",
        409: "Session busy, its run waiting for approval, or the run not waiting",
        413: "Payload too large",
        422: "Validation error",
        429: "Rate limited",
        503: "Draining, overloaded or circuit open",
    }.items()
}


def run_result(record: RunRecord) -> dict[str, Any]:
    """A run as `POST /v1/runs` answers it (the RunResult): succeeded, or waiting with its `pending` calls."""
    result = {
        "run_id": record.run_id,
        "session_id": record.session_id,
        "status": record.status.value,
        "output": record.output,
        "tools_used": record.tools_used,
        "usage": record.usage.as_dict(),
        "cost_usd": record.cost_usd,
        "duration_ms": round(record.duration_ms or 0.0, 3),
    }
    if record.status is RunStatus.WAITING_APPROVAL:
        result["pending"] = record.pending or []
    return result


def run_view(record: RunRecord) -> dict[str, Any]:
    """A run as `GET /v1/runs/{id}` shows it (and a completion webhook sends it)."""
    view: dict[str, Any] = {
        "run_id": record.run_id,
        "session_id": record.session_id,
        "agent": record.agent,
        "status": record.status.value,
        "usage": record.usage.as_dict(),
        "cost_usd": record.cost_usd,
        "tools_used": record.tools_used,
        "metadata": record.metadata,
        "created_at": _iso(record.created_at),
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "duration_ms": record.duration_ms,
    }
    if record.output is not None:
        view["output"] = record.output
    if record.status is RunStatus.WAITING_APPROVAL:
        view["pending"] = record.pending or []
    if record.error_type is not None:
        view["error"] = {"type": record.error_type, "message": record.error_message or ""}
    return view


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
