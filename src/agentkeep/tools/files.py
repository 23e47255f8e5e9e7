"""`read_file`, `write_file`, `list_files`: file tools that act in the calling run's folder and cannot leave it.

Which workspace: object storage when AGENTKEEP_WORKSPACE_URL is set (`tools.objects`), else
AGENTKEEP_WORKSPACE_DIR on disk (`tools.disk`). Which folder of it: the one AGENTKEEP_WORKSPACE_SCOPE
gives the run the call belongs to (`tools.scope`): its session's (the default), its user's, or the
shared root. Outside any run, a script calling the tools directly gets the root, as it always did.
Both backends jail every path to that folder, cap reads and writes at AGENTKEEP_FILE_MAX_BYTES and
write all or nothing.
"""

from __future__ import annotations

import importlib.util

from agentkeep.config import Settings
from agentkeep.errors import ConfigError
from agentkeep.tools._config import tool_settings
from agentkeep.tools.disk import Workspace
from agentkeep.tools.scope import current_owner, scope_folder
from agentkeep.tools.workspace import BaseWorkspace

__all__ = [
    "Workspace",
    "check_workspace",
    "default_workspace",
    "list_files",
    "read_file",
    "remove_session_files",
    "workspace_of",
    "workspace_root",
    "write_file",
]


def workspace_root(settings: Settings | None = None) -> BaseWorkspace:
    """The whole workspace the settings name, every scope's folder in it."""
    settings = settings or tool_settings()
    if settings.workspace_url:
        from agentkeep.tools.objects import ObjectWorkspace  # obstore is the `s3` extra's

        return ObjectWorkspace(settings.workspace_url, max_bytes=settings.file_max_bytes)
    return Workspace(settings.workspace_dir, max_bytes=settings.file_max_bytes)


def workspace_of(user_id: str, session_id: str, settings: Settings | None = None) -> BaseWorkspace:
    """What a run of `user_id` in `session_id` sees (its scope's folder), e.g. for the files routes."""
    settings = settings or tool_settings()
    root = workspace_root(settings)
    folder = scope_folder(settings.workspace_scope, user_id, session_id)
    return root.scoped(folder) if folder else root


def check_workspace(settings: Settings) -> None:
    """At startup: `ConfigError` when object storage is asked for without its client installed."""
    if settings.workspace_url and importlib.util.find_spec("obstore") is None:
        raise ConfigError("AGENTKEEP_WORKSPACE_URL needs the s3 extra: pip install 'agentkeep[s3]'")


def remove_session_files(user_id: str, session_id: str, settings: Settings | None = None) -> bool:
    """Delete what a deleted session's tools wrote; only `session` scope gives a session a folder
    of its own (a user's folder outlives each of their sessions). Returns whether there was one to delete."""
    settings = settings or tool_settings()
    if settings.workspace_scope != "session":
        return False
    workspace_of(user_id, session_id, settings).remove()
    return True


def default_workspace() -> BaseWorkspace:
    """The workspace of the run this call belongs to; the root outside any run."""
    owner = current_owner()
    if owner is None:
        return workspace_root()
    return workspace_of(owner.user_id, owner.session_id)


def read_file(path: str) -> str:
    """Read a text file from the workspace.

    Paths are relative to the workspace (this conversation's files); nothing outside it can be
    read (no `..` escapes, no symbolic links that lead out, no devices or pipes). Files over 1 MB
    are refused.

    Args:
        path: The file's path inside the workspace, e.g. `notes/todo.md`.

    Returns:
        The file's text.
    """
    return default_workspace().read_text(path)


def write_file(path: str, content: str) -> str:
    """Create or replace a text file in the workspace.

    Missing directories are created. The write is atomic: the file holds either its old or its
    new content, never a mix. Paths outside the workspace and content over 1 MB are refused.

    Args:
        path: The file's path inside the workspace, e.g. `reports/summary.md`.
        content: The complete new text of the file.

    Returns:
        A one-line confirmation with the number of bytes written.
    """
    written = default_workspace().write_text(path, content)
    return f"wrote {written} bytes to {path}"


def list_files(path: str = ".") -> list[str]:
    """List a directory of the workspace.

    Directories end with `/`; files show their size in bytes.

    Args:
        path: The directory inside the workspace; `.` (the default) is the workspace itself.

    Returns:
        One entry per file or directory, sorted by name.
    """
    return default_workspace().list_dir(path)
