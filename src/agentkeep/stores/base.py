"""What the runtime needs from a database, as records and one ABC.

Sessions are keyed by (user_id, session_id): two users may use the same session id and never see
each other's history, which is what makes another user's session indistinguishable from a missing one.
Only JSON-serialisable values cross this boundary, so any backend can hold them.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from agentkeep.hooks import Usage

__all__ = ["HourUsage", "RunQuery", "RunRecord", "RunStatus", "SessionRecord", "Store", "Usage"]


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
    input: str
    created_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    background: bool = False
    webhook_url: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    output: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    tools_used: list[str] = field(default_factory=list)
    duration_ms: float | None = None
    messages_json: bytes | None = None  # the run's new messages, kept even when it failed
    steps_json: bytes | None = None  # its model requests and tool calls, as `observability.steps` wrote them


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
    """Which runs `Store.list_runs` returns: newest first, each filter optional."""

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


class Store(ABC):
    """Durable state of sessions and runs. One implementation per database family."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    @abstractmethod
    async def close(self) -> None:
        """Release every connection."""

    @abstractmethod
    async def ping(self) -> None:
        """Run a real query; raise if the database does not answer."""

    @abstractmethod
    async def start_run(self, run: RunRecord, lease_s: float) -> list[bytes]:
        """Record `run` and make it its session's only writer; return the session's history chunks.

        Creates the session when it does not exist. Raises `SessionBusy`, recording nothing, while
        another run holds an unexpired lease on the session, whichever process holds it.
        """

    @abstractmethod
    async def create_run(self, run: RunRecord) -> None:
        """Record a new run."""

    @abstractmethod
    async def finish_run(self, run: RunRecord, *, append_to_session: bytes | None) -> bool:
        """Record the run's outcome, append its messages to the session when given, release the
        session's lease: all in one transaction, so a crash leaves either all of it or none.
        A run that already has a final status (a cancel came first) is left as it is: nothing is
        written, and False says so."""

    @abstractmethod
    async def update_run_status(self, run_id: str, status: RunStatus, *, started_at: float | None = None) -> None:
        """Move a run to `status` (queued → running, …)."""

    @abstractmethod
    async def get_run(self, user_id: str | None, run_id: str) -> RunRecord | None:
        """The run, if it exists and belongs to `user_id`; `None` for any user's (an admin's view)."""

    @abstractmethod
    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching `query`, newest first, as summaries: their input, output, messages, steps
        and metadata are left empty, so a page of them stays cheap to read."""

    @abstractmethod
    async def usage_by_hour(self, user_id: str, since: float, hours: int) -> list[HourUsage]:
        """`hours` consecutive hours from `since` (the start of an hour), oldest first, zero-filled."""

    @abstractmethod
    async def get_session(self, user_id: str, session_id: str) -> SessionRecord | None:
        """The session, if it exists for `user_id`."""

    @abstractmethod
    async def delete_session(self, user_id: str, session_id: str) -> bool:
        """Delete a session and its history; False when there was none. `SessionBusy` while running."""
