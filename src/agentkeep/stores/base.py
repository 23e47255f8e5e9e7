"""The records the store reads and writes: runs, sessions, and the queries over them.

Sessions are keyed by (user_id, session_id): two users may use the same session id and never see
each other's history, which is what makes another user's session indistinguishable from a missing one.
Only JSON-serialisable values cross this boundary, so any backend can hold them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from agentkeep.hooks import Usage

__all__ = ["HourUsage", "RunQuery", "RunRecord", "RunStatus", "SessionRecord", "Usage"]


class RunStatus(enum.StrEnum):
    """Where a run is in its life."""

    QUEUED = "queued"  # accepted for background execution, not started
    RUNNING = "running"  # a process is executing it now
    WAITING_APPROVAL = "waiting_approval"  # paused on a tool that needs a human decision
    SUCCEEDED = "succeeded"  # finished with an output; its messages joined the session
    FAILED = "failed"  # stopped by an error; the session is as it was before the run
    CANCELLED = "cancelled"  # stopped on request
    INTERRUPTED = "interrupted"  # its process stopped (drain timeout, crash) before it finished

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED}


@dataclass
class RunRecord:
    """One run as stored: its request, its progress and its outcome."""

    run_id: str
    session_id: str
    user_id: str
    agent: str
    status: RunStatus
    input: str  # the message's text (a message of parts: its text parts, joined)
    created_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    background: bool = False
    webhook_url: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None  # the agent's output as a JSON value (a str for a text agent); None: none yet
    error_type: str | None = None
    error_message: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    tools_used: list[str] = field(default_factory=list)
    duration_ms: float | None = None
    messages_json: bytes | None = None  # the run's new messages, kept even when it failed (and while it waits)
    steps_json: bytes | None = None  # its model requests and tool calls, as `observability.steps` wrote them
    input_parts: list[dict[str, Any]] | None = None  # a message of parts, as `agentkeep.parts` checked them
    # While it waits for tool decisions: the calls as the API lists them, what it needs to continue
    # (`agentkeep.deferred`: the requests, sibling results, then the decisions) and its deadline.
    pending: list[dict[str, Any]] | None = None
    deferred_json: bytes | None = None
    waiting_until: float | None = None
    resumes: int = 0  # resumes after a wait so far: part of its ids (Pydantic AI's run id, idempotency keys)


@dataclass
class SessionRecord:
    """A conversation: its history as Pydantic AI messages in JSON, one chunk per successful run."""

    session_id: str
    user_id: str
    created_at: float
    updated_at: float
    history_chunks: list[bytes]
    cost_usd: float | None


@dataclass(frozen=True)
class RunQuery:
    """Which runs `SQLStore.list_runs` returns: newest first, each filter optional."""

    user_id: str | None = None  # None: every user's runs (an admin's view)
    status: RunStatus | None = None
    agent: str | None = None
    session_id: str | None = None
    run_id: str | None = None
    limit: int = 50
    before: tuple[float, str] | None = None  # (created_at, run_id) of the last run of the previous page


@dataclass(frozen=True)
class HourUsage:
    """One hour of a user's activity: settled spend and tokens (the ledger), and runs started."""

    hour: float  # UNIX seconds at the start of the hour
    cost_nano: int
    tokens: int
    runs: int
