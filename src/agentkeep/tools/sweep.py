"""Retention for the workspace: which scope folders outlived their session (or user).

A session's files live as long as the session is active: a folder is removed once its session has
not been updated within AGENTKEEP_RUN_RETENTION_DAYS (its runs are being pruned too), or has no
row at all (deleted while the storage was failing). In `user` scope a user's folder goes once none
of their sessions is active. The `shared` root belongs to nobody and is never swept.

The upkeep (`durable.upkeep`) lists the folders first and asks the database which sessions are
active second: a folder listed belongs to a session whose row was written before its first file,
so a session started in between is never taken for a stale one. Only names `scope.folder_name`
makes are considered; anything else an operator put beside them is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentkeep.tools.scope import SESSIONS, USERS, WorkspaceScope, folder_name, is_folder_name
from agentkeep.tools.workspace import BaseWorkspace

__all__ = ["scope_folders", "stale_folders"]


def scope_folders(root: BaseWorkspace, scope: WorkspaceScope) -> list[str]:
    """The folders `scope` gives runs under `root` that exist now, relative to it."""
    if scope == "user":
        return [f"{USERS}/{user}" for user in root.scoped(USERS).subfolders() if is_folder_name(user)]
    if scope == "session":
        found: list[str] = []
        for user in root.scoped(SESSIONS).subfolders():
            if is_folder_name(user):
                sessions = root.scoped(f"{SESSIONS}/{user}").subfolders()
                found += [f"{SESSIONS}/{user}/{name}" for name in sessions if is_folder_name(name)]
        return found
    return []


def stale_folders(folders: Iterable[str], scope: WorkspaceScope, active: Iterable[tuple[str, str]]) -> list[str]:
    """Which of `folders` belong to no session in `active` (`(user_id, session_id)` pairs)."""
    if scope == "user":
        keep = {f"{USERS}/{folder_name('user', user)}" for user, _ in active}
    elif scope == "session":
        keep = {f"{SESSIONS}/{folder_name('user', user)}/{folder_name('session', session)}" for user, session in active}
    else:
        return []
    return [folder for folder in folders if folder not in keep]
