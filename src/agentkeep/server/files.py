"""`GET /v1/sessions/{session_id}/files` and `GET /v1/sessions/{session_id}/files/{path}`: what a
session's file tools wrote, listed and downloaded by the people it belongs to.

Who: the session's owner; an admin key may add `?user_id=` to read another user's session (as on
`GET /v1/usage`), since a session id names a session only together with its user. Another user's
session, like one that does not exist, is 404.

What: the folder the session's runs see (AGENTKEEP_WORKSPACE_SCOPE): the session's own, the user's
(shared by their sessions) in `user` scope, the shared root in `shared` scope. Everything is read
through the same jailed workspace as the tools, never a path joined here and opened: on disk a
symlink that `run_python` left is not followed, on object storage the key jail applies, and the
size limit (AGENTKEEP_FILE_MAX_BYTES) holds.

How a download is served: always as an attachment of type application/octet-stream, with
`nosniff` and a CSP whose `sandbox` gives the response an opaque origin of its own, so an HTML or
SVG file an agent wrote can never run as this origin, even opened directly.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from agentkeep.api_models import ERROR_RESPONSES
from agentkeep.errors import AgentkeepError, InvalidRequest, NotFound, Unauthorized
from agentkeep.runtime import check_session_id
from agentkeep.server.routes import State, User
from agentkeep.server.usage import caller_is_admin
from agentkeep.stores.base import RunQuery
from agentkeep.tools import FileMissing, ToolFailure, ToolRefused
from agentkeep.tools.files import workspace_of
from agentkeep.tools.workspace import BaseWorkspace

__all__ = ["DOWNLOAD_CSP", "router"]

router = APIRouter()

# No fetch of anything, no script, form, popup or plugin, and an opaque origin (`sandbox`): a file
# opened in a tab cannot act as this origin. frame-ancestors, form-action and base-uri do not fall
# back to default-src, so they are named.
DOWNLOAD_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
_NOT_ASCII_NAME = re.compile(r"[^A-Za-z0-9._-]")
_OWNER = Annotated[str | None, Query(max_length=128, description="Another user's session (admin keys only).")]


class FileOut(BaseModel):
    path: str = Field(description="Relative to the session's workspace folder, '/' between folders.")
    size: int = Field(description="Bytes.")
    modified_at: str = Field(description="When it was last written, ISO 8601 UTC.")


class FilesOut(BaseModel):
    files: list[FileOut]


@router.get(
    "/v1/sessions/{session_id}/files",
    response_model=FilesOut,
    responses=ERROR_RESPONSES,
    summary="The files a session's tools wrote",
)
async def list_session_files(
    session_id: str,
    state: State,
    caller: User,
    is_admin: Annotated[bool, Depends(caller_is_admin)],
    user_id: _OWNER = None,
) -> Any:
    """Every file of the session's workspace folder, at any depth, sorted by path (at most 10,000)."""
    workspace = await _session_workspace(state, caller, is_admin, user_id, session_id)
    with _as_http():
        found = await anyio.to_thread.run_sync(workspace.files)
    return {"files": [{"path": f.path, "size": f.size, "modified_at": _iso(f.modified_at)} for f in found]}


@router.get(
    "/v1/sessions/{session_id}/files/{path:path}",
    response_class=Response,
    responses={
        200: {
            "description": "The file, as an attachment",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        },
        **ERROR_RESPONSES,
    },
    summary="Download one of a session's files",
)
async def download_session_file(
    session_id: str,
    path: Annotated[str, Path(description="The file's path in the session's workspace, e.g. reports/q3.md")],
    state: State,
    caller: User,
    is_admin: Annotated[bool, Depends(caller_is_admin)],
    user_id: _OWNER = None,
) -> Response:
    workspace = await _session_workspace(state, caller, is_admin, user_id, session_id)
    with _as_http():
        data = await anyio.to_thread.run_sync(workspace.read_bytes, path)
    return Response(content=data, media_type="application/octet-stream", headers=_download_headers(path))


async def _session_workspace(
    state: State, caller: str, is_admin: bool, user_id: str | None, session_id: str
) -> BaseWorkspace:
    """The session's folder, once it is known to be the caller's (or, for an admin, `user_id`'s)."""
    check_session_id(session_id)
    if user_id is not None and user_id != caller and not is_admin:
        raise Unauthorized("user_id needs an admin key; without it you see your own sessions")
    owner = user_id or caller
    store = state.rt.store
    # A task's session has runs but no history row; a session whose runs were pruned, the other way round.
    has_runs = bool(await store.list_runs(RunQuery(user_id=owner, session_id=session_id, limit=1)))
    if not has_runs and await store.get_session(owner, session_id) is None:
        raise NotFound(f"no session {session_id!r}")
    return workspace_of(owner, session_id, state.rt.settings)


@contextlib.contextmanager
def _as_http() -> Iterator[None]:
    """A tool's refusal or failure as the contract's error: refused 400, missing 404, storage failing 500."""
    try:
        yield
    except FileMissing as exc:
        raise NotFound(exc.message) from None
    except ToolRefused as exc:
        raise InvalidRequest(exc.message) from None
    except ToolFailure as exc:  # the storage's fixed sentence, never its own message
        raise AgentkeepError(exc.message) from None


def _download_headers(path: str) -> dict[str, str]:
    # The name goes into a header: only a sanitised ASCII fallback and a percent-encoded UTF-8
    # form, so no quote, semicolon or newline a sandbox-made name holds can change the header.
    name = path.rstrip("/").rpartition("/")[2] or "file"
    fallback = _NOT_ASCII_NAME.sub("_", name) or "file"
    return {
        "Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}",
        "Content-Security-Policy": DOWNLOAD_CSP,
        "Cache-Control": "private, no-store",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Referrer-Policy": "no-referrer",
    }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
