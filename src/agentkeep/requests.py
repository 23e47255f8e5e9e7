"""What a caller asks the runtime for (`RunRequest`), a run recorded and ready to execute
(`PreparedRun`), and the ids they carry. `agentkeep.runtime` re-exports every name here."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.messages import ModelMessage

from agentkeep.errors import InvalidRequest
from agentkeep.stores.base import RunRecord

__all__ = ["ANONYMOUS_USER", "SESSION_ID_RE", "PreparedRun", "RunRequest", "check_session_id", "new_id"]

ANONYMOUS_USER = "anonymous"
SESSION_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass
class RunRequest:
    """What a caller asks for, before validation."""

    message: str | Sequence[Any]  # text, or parts (`agentkeep.parts`): text, media by URL, media inline
    user_id: str = ANONYMOUS_USER
    session_id: str | None = None
    agent: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    background: bool = False
    webhook_url: str | None = None


@dataclass
class PreparedRun:
    """A run that is recorded and holds its session, ready to execute."""

    record: RunRecord
    history: list[ModelMessage]
    # A synchronous or streamed run takes its slot under the concurrency cap at admission, so a
    # burst cannot all pass `admit()` before any of them is counted; `execute` takes it over.
    holds_slot: bool = False


def check_session_id(session_id: str) -> str:
    if not SESSION_ID_RE.fullmatch(session_id):
        raise InvalidRequest("session_id must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'")
    return session_id


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
