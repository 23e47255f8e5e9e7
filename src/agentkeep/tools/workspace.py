"""What the file tools and the files routes ask of a workspace, wherever its files are.

    BaseWorkspace        one folder that every path is jailed to
    ├── Workspace        on local disk (AGENTKEEP_WORKSPACE_DIR; `tools.disk`)
    └── ObjectWorkspace  under a key prefix of an S3-compatible bucket (AGENTKEEP_WORKSPACE_URL; `tools.objects`)

Both give the same answers: the same size limit (AGENTKEEP_FILE_MAX_BYTES) on reads and writes, a
write that is all or nothing, the same listing format, and a refusal (`ToolRefused`) for any path
that would leave the folder. A workspace is opened on the root, and `scoped()` narrows it to a
run's folder (`tools.scope`); nothing reached through the narrowed one is outside that folder.

The methods are synchronous: a tool runs on a worker thread (Pydantic AI runs sync tools there), and
an async caller (the files routes) hands them to one.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Self

__all__ = ["MAX_ENTRIES", "MAX_LISTED", "TEMPORARY", "BaseWorkspace", "FileInfo", "child", "shown"]

MAX_LISTED = 10_000  # files one `files()` call returns: a listing is one response, so it is bounded
MAX_ENTRIES = 1_000  # entries one `list_dir` shows the model
_SHOWN_CHARS = 200
# The disk workspace's temporary files (`.<name>.<12 hex>.tmp`), seen only while a write is under way.
TEMPORARY = re.compile(r"\..*\.[0-9a-f]{12}\.tmp")


@dataclass(frozen=True)
class FileInfo:
    """One file of a workspace, for `GET /v1/sessions/{id}/files`."""

    path: str  # relative to the workspace's folder, `/` between folders
    size: int
    modified_at: float  # UNIX seconds


class BaseWorkspace(ABC):
    """One folder the file tools are confined to; see the module docstring."""

    max_bytes: int
    folder: str  # relative to the root, "" for the root itself

    def read_text(self, path: str) -> str:
        """The UTF-8 text of a file (undecodable bytes replaced)."""
        return self.read_bytes(path).decode("utf-8", errors="replace")

    @abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """A file's bytes; refused over `max_bytes`, for anything but a regular file, or outside."""

    @abstractmethod
    def write_text(self, path: str, content: str) -> int:
        """Replace (or create) a file with `content`, all or nothing; returns the bytes written."""

    @abstractmethod
    def list_dir(self, path: str = ".") -> list[str]:
        """Entries of a folder, sorted: `name/` for a folder, `name (N bytes)` for a file."""

    @abstractmethod
    def files(self, limit: int = MAX_LISTED) -> list[FileInfo]:
        """Every file under the folder, at any depth, sorted by path; at most `limit`."""

    @abstractmethod
    def subfolders(self) -> list[str]:
        """The names of the folders directly inside this one (none when it does not exist)."""

    @abstractmethod
    def remove(self) -> None:
        """Delete the folder and everything in it; nothing happens when it does not exist."""

    @abstractmethod
    def scoped(self, folder: str) -> Self:
        """The same workspace narrowed to `folder` (relative, made of `scope.folder_name`s)."""


def shown(path: object) -> str:
    """A path as a refusal quotes it: cut short, with a NUL made visible."""
    text = str(path)
    text = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"
    return repr(text.replace("\x00", "\\0"))


def child(folder: str, name: str) -> str:
    """`folder/name`, or `name` at the root."""
    return f"{folder}/{name}" if folder else name
