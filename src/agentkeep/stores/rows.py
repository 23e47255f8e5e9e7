"""A `RunRecord` as a row of `agentkeep_runs`, and back: the one place that knows how each field is stored.

`output` is JSON text in its Text column (a text agent's answer is a JSON string, a structured
output its object), so every output reads back as the JSON value it was; migration 7 turned the
plain text of older rows into JSON strings.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import to_json

from agentkeep.stores.base import RunRecord, RunStatus, Usage

__all__ = ["decode_output", "encode_output", "run_from_row", "run_row"]


def encode_output(output: Any) -> str | None:
    """An output as stored: its JSON text; None (no output) stays NULL."""
    return None if output is None else to_json(output).decode()


def decode_output(stored: str | None) -> Any:
    return None if stored is None else json.loads(stored)


def run_row(run: RunRecord) -> dict[str, Any]:
    """Every column of `run`'s row."""
    return {
        "run_id": run.run_id,
        "user_id": run.user_id,
        "session_id": run.session_id,
        "agent": run.agent,
        "status": run.status.value,
        "input": run.input,
        "metadata": run.metadata,
        "background": run.background,
        "webhook_url": run.webhook_url,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "output": encode_output(run.output),
        "error_type": run.error_type,
        "error_message": run.error_message,
        "usage": run.usage.as_dict(),
        "cost_usd": run.cost_usd,
        "tools_used": run.tools_used,
        "duration_ms": run.duration_ms,
        "messages": run.messages_json,
        "steps": run.steps_json,
        "input_parts": run.input_parts,
        "pending": run.pending,
        "deferred": run.deferred_json,
        "waiting_until": run.waiting_until,
        "resumes": run.resumes,
    }


def run_from_row(row: Any) -> RunRecord:
    """The record of a full row (a mapping of every column)."""
    return RunRecord(
        run_id=row["run_id"],
        session_id=row["session_id"],
        user_id=row["user_id"],
        agent=row["agent"],
        status=RunStatus(row["status"]),
        input=row["input"],
        created_at=row["created_at"],
        metadata=row["metadata"] or {},
        background=bool(row["background"]),
        webhook_url=row["webhook_url"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        output=decode_output(row["output"]),
        error_type=row["error_type"],
        error_message=row["error_message"],
        usage=Usage.from_dict(row["usage"]),
        cost_usd=row["cost_usd"],
        tools_used=list(row["tools_used"] or []),
        duration_ms=row["duration_ms"],
        messages_json=bytes(row["messages"]) if row["messages"] is not None else None,
        steps_json=bytes(row["steps"]) if row["steps"] is not None else None,
        input_parts=row["input_parts"],
        pending=row["pending"],
        deferred_json=bytes(row["deferred"]) if row["deferred"] is not None else None,
        waiting_until=row["waiting_until"],
        resumes=int(row["resumes"] or 0),
    )
