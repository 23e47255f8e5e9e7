"""`run_python` on object storage: the run's folder copied into a private directory, and back.

A bucket cannot be bound into the sandbox, so its files are brought to it:

    in     the folder's files (at most 200, 32 MiB in all, each within AGENTKEEP_FILE_MAX_BYTES) are
           downloaded into a fresh private directory, each key's ETag and content hash remembered;
           over the caps /workspace starts empty and the code is told so
    run    that directory is the sandbox's /workspace
    back   each regular file the code left there (no links, one name, within the limit, at most 200)
           that is new or changed is PUT conditionally: a new one only if no object appeared
           meanwhile, a changed one only if the object is still the version copied in. A file
           another writer changed meanwhile (another run of the user, in `user` scope) keeps their
           version, and the code's result says so

A file deleted in the sandbox stays in the bucket: S3 has no conditional delete, and an
unconditional one could remove what another run just wrote. The directory is removed afterwards.
What was not copied either way is added to the result's stderr, one line each, so the model learns it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio.to_thread

from agentkeep.tools._errors import ToolFailure
from agentkeep.tools._keys import object_key
from agentkeep.tools.disk import SANDBOX_UID
from agentkeep.tools.objects import ObjectWorkspace

__all__ = ["Staged", "staged"]

_MAX_FILES = 200
_MAX_TOTAL_BYTES = 32 * 1_048_576


@dataclass
class Staged:
    """The sandbox's /workspace for one call: a descriptor of the directory, and what was not copied."""

    fd: int
    notes: list[str] = field(default_factory=list)
    copied: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # path → (ETag, sha256)


@asynccontextmanager
async def staged(workspace: ObjectWorkspace) -> AsyncIterator[Staged]:
    """Copy `workspace` into a private directory for the block, then copy what changed back."""
    directory = tempfile.mkdtemp(prefix="agentkeep-workspace-")
    owner = SANDBOX_UID if os.geteuid() == 0 else None
    try:
        if owner is not None:  # the sandbox runs as nobody and must write here
            os.chown(directory, owner, owner)
        fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            here = Staged(fd)
            await anyio.to_thread.run_sync(_copy_in, workspace, directory, here, owner)
            yield here
            await anyio.to_thread.run_sync(_copy_back, workspace, directory, here)
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _copy_in(workspace: ObjectWorkspace, directory: str, into: Staged, owner: int | None) -> None:
    listing = workspace.files(limit=_MAX_FILES + 1)
    if len(listing) > _MAX_FILES or sum(entry.size for entry in listing) > _MAX_TOTAL_BYTES:
        into.notes.append(
            f"[workspace] over {_MAX_FILES} files or {_MAX_TOTAL_BYTES // 1_048_576} MiB: /workspace started "
            "empty (use read_file for what you need)"
        )
        return
    for entry in listing:
        if entry.size > workspace.max_bytes:
            into.notes.append(f"[workspace] {entry.path}: over the {workspace.max_bytes}-byte limit, not copied in")
            continue
        try:
            object_key("", entry.path)  # a key put in the bucket by other means may hold `..`
            data, e_tag = workspace.read_tagged(entry.path)
        except ToolFailure as exc:
            into.notes.append(f"[workspace] {entry.path}: {exc.message}")
            continue
        target = os.path.join(directory, *entry.path.split("/"))
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "xb") as handle:  # a fresh private directory: nothing to race with
                handle.write(data)
        except OSError:  # both `a` and `a/b` exist in the bucket; a disk cannot hold both
            into.notes.append(f"[workspace] {entry.path}: clashes with a folder of the same name, not copied in")
            continue
        into.copied[entry.path] = (e_tag, hashlib.sha256(data).hexdigest())
    if owner is not None:
        for top, folders, names in os.walk(directory):
            for name in (*folders, *names):
                os.chown(os.path.join(top, name), owner, owner, follow_symlinks=False)


def _copy_back(workspace: ObjectWorkspace, directory: str, staged: Staged) -> None:
    written = 0
    for top, _folders, names, top_fd in os.fwalk(directory, follow_symlinks=False):
        for name in sorted(names):
            path = posixpath.normpath(posixpath.join(os.path.relpath(top, directory), name))
            data = _regular_file(top_fd, name, workspace.max_bytes)
            if data is None:
                staged.notes.append(f"[workspace] {path}: not a regular file within the size limit, not saved")
                continue
            before = staged.copied.get(path)
            if before is not None and before[1] == hashlib.sha256(data).hexdigest():
                continue
            written += 1
            if written > _MAX_FILES:
                staged.notes.append(f"[workspace] more than {_MAX_FILES} changed files: the rest were not saved")
                return
            try:
                workspace.write_if(path, data, before[0] if before is not None else None)
            except ToolFailure as exc:
                staged.notes.append(f"[workspace] {path}: {exc.message}; not saved")


def _regular_file(dir_fd: int, name: str, limit: int) -> bytes | None:
    """The bytes of a plain file with one name and at most `limit` bytes; None for anything else."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1 or info.st_size > limit:
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    return data if len(data) <= limit else None
