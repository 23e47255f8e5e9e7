"""Whose files a tool call sees: the run it belongs to, and the folder that run's scope maps to.

AGENTKEEP_WORKSPACE_SCOPE picks the folder, under the workspace root (a directory, or the key prefix
of AGENTKEEP_WORKSPACE_URL):

    session   sessions/<user>/<session>/   one conversation's files (the default)
    user      users/<user>/                one user's files, shared by all of their sessions
    shared    the root itself              one folder for everyone, as before scopes existed

The run comes from the run's own life: `agentkeep.lifecycle.run_scope`, which every kind of run
goes through (a request, a stream, a background run, a task and its `ask()` calls, a schedule, a
resumed approval, a Lambda invocation), binds its record's user and session with `bound_to()`, and
the tools read them back with `current_owner()`. Nothing the model sends takes part. Outside any run
(a script calling `read_file` itself) there is no owner and the tools use the root, as they always did.

A folder's name is `<slug>-<32 hex digits>`: the hex is a SHA-256 of the exact id, separated by its
kind, so no user id or session id can name another one's folder (`..`, `a/b`, `A` and `a`, two
spellings of `é` all differ); the slug, lowercase `[a-z0-9_-]`, is only there for people reading a
listing. The name never starts with `.` or `-`, is at most 73 characters, and means the same on a
case-insensitive file system and in an S3 key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "SESSIONS",
    "USERS",
    "RunOwner",
    "WorkspaceScope",
    "bound_to",
    "current_owner",
    "folder_name",
    "is_folder_name",
    "scope_folder",
]

WorkspaceScope = Literal["session", "user", "shared"]

SESSIONS = "sessions"  # sessions/<user>/<session>/: the session scope's folders
USERS = "users"  # users/<user>/: the user scope's folders

_DOMAIN = "agentkeep-workspace-v1"
_HEX_CHARS = 32  # 128 bits: a collision takes 2^64 tries, a chosen second id 2^128
_SLUG_CHARS = 40
_NOT_SLUG = re.compile(r"[^a-z0-9_-]+")
_FOLDER_NAME = re.compile(rf"(?:[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?|x)-[0-9a-f]{{{_HEX_CHARS}}}")


@dataclass(frozen=True)
class RunOwner:
    """The user and session of the run a tool call belongs to."""

    user_id: str
    session_id: str


_OWNER: ContextVar[RunOwner | None] = ContextVar("agentkeep_files_owner", default=None)


@contextmanager
def bound_to(user_id: str, session_id: str) -> Iterator[RunOwner]:
    """Inside the block (and every task and worker thread started from it), the tools act for this run."""
    owner = RunOwner(user_id, session_id)
    token = _OWNER.set(owner)
    try:
        yield owner
    finally:
        _OWNER.reset(token)


def current_owner() -> RunOwner | None:
    """The run the current tool call belongs to; None outside any run."""
    return _OWNER.get()


def folder_name(kind: Literal["user", "session"], ident: str) -> str:
    """The folder of one user or one session: `<slug>-<hash of kind and exact id>`."""
    exact = f"{_DOMAIN}\0{kind}\0{ident}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(exact).hexdigest()[:_HEX_CHARS]
    slug = _NOT_SLUG.sub("-", ident.lower()).strip("-_")[:_SLUG_CHARS].rstrip("-_")
    return f"{slug or 'x'}-{digest}"


def is_folder_name(name: str) -> bool:
    """Whether `name` has the shape `folder_name` gives (the sweep removes nothing else)."""
    return _FOLDER_NAME.fullmatch(name) is not None


def scope_folder(scope: WorkspaceScope, user_id: str, session_id: str) -> str:
    """The folder, relative to the workspace root, that a run of `user_id` in `session_id` sees."""
    if scope == "shared":
        return ""
    user = folder_name("user", user_id)
    if scope == "user":
        return f"{USERS}/{user}"
    return f"{SESSIONS}/{user}/{folder_name('session', session_id)}"
