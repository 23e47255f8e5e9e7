"""The local workspace (AGENTKEEP_WORKSPACE_DIR) in `agentkeep backup` and `agentkeep restore`.

Backup: beside the database's backup `PATH`, its sidecar `<stem>-workspace.tar` holds every
directory and regular file under the workspace, each session's and user's folder with it. Symbolic
links, hard-linked files and special files are left out (a link may name a file outside, and
`run_python` can make one). The tar is written to a temporary file and renamed into place, so the
sidecar is never half-written; it is not one instant with the database, though: each file is as it
was when read, a few moments after the database's snapshot.

Restore: a backup with a workspace sidecar replaces the workspace: the tar is extracted (tarfile's
`data` filter: no absolute paths, no `..`, no links out, no devices) into a new folder beside it,
the current workspace is kept as `<workspace>.pre-restore`, and the new one is renamed into place.
A backup without one leaves the workspace as it is.

A workspace on object storage (AGENTKEEP_WORKSPACE_URL) is not copied: the bucket is its own
backup (turn on its versioning, or replicate it).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from agentkeep.stores.backup import BackupError

__all__ = ["WorkspaceReport", "backup_workspace", "restore_workspace", "workspace_sidecar"]

_TEMPORARY_SUFFIX = ".tmp"  # the file tools' files being written: `.<name>.<hex>.tmp`


@dataclass(frozen=True)
class WorkspaceReport:
    """What a workspace backup or restore wrote."""

    path: Path
    files: int
    skipped: int = 0  # links and special files left out, files that vanished while read
    kept: Path | None = None  # restore: where the workspace it replaced was kept


def workspace_sidecar(backup: Path) -> Path:
    """Where the workspace of the backup `backup` is: `agentkeep-….db` → `agentkeep-…-workspace.tar`."""
    return backup.with_name(f"{backup.stem}-workspace.tar")


def backup_workspace(root: Path, backup: Path) -> WorkspaceReport | None:
    """Tar the workspace `root` beside the database backup `backup`; None when there is no workspace."""
    if not root.is_dir():
        return None
    target = workspace_sidecar(backup)
    temporary = target.with_name(f".{target.name}.backup-{secrets.token_hex(4)}")
    try:
        with tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as archive:
            files, skipped = _add_tree(archive, root)
        _durable_replace(temporary, target)
    except OSError as exc:
        raise BackupError(f"could not back up the workspace {root}: {exc.strerror or exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return WorkspaceReport(target, files, skipped)


def restore_workspace(root: Path, backup: Path) -> WorkspaceReport | None:
    """Replace the workspace `root` with the one saved beside `backup`; None when it has none."""
    source = workspace_sidecar(backup)
    if not source.is_file():
        return None
    fresh = root.with_name(f".{root.name}.restore-{secrets.token_hex(4)}")
    kept = root.with_name(f"{root.name}.pre-restore")
    try:
        with tarfile.open(source) as archive:
            archive.extractall(fresh, filter="data")
            files = sum(1 for member in archive.getmembers() if member.isfile())
        if kept.exists():
            shutil.rmtree(kept)
        had_one = root.exists()
        if had_one:
            os.replace(root, kept)
        os.replace(fresh, root)
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"could not restore the workspace from {source}: {exc}") from None
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return WorkspaceReport(root, files, kept=kept if had_one else None)


def _add_tree(archive: tarfile.TarFile, root: Path) -> tuple[int, int]:
    """Add the folders and plain files under `root`, never following a link; (files, skipped)."""
    files = skipped = 0
    for top, folders, names, top_fd in os.fwalk(root, follow_symlinks=False):
        relative = os.path.relpath(top, root)
        for name in sorted(folders):
            info = tarfile.TarInfo(os.path.normpath(os.path.join(relative, name)))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for name in sorted(names):
            if name.startswith(".") and name.endswith(_TEMPORARY_SUFFIX):
                continue
            if _add_file(archive, top_fd, name, os.path.normpath(os.path.join(relative, name))):
                files += 1
            else:
                skipped += 1
    return files, skipped


def _add_file(archive: tarfile.TarFile, dir_fd: int, name: str, arcname: str) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:  # a link (ELOOP), or gone since the listing
        return False
    with os.fdopen(fd, "rb") as handle:
        details = os.fstat(handle.fileno())
        if not stat.S_ISREG(details.st_mode) or details.st_nlink > 1:
            return False
        # Read whole before its header is written: a file run_python changes in place meanwhile
        # cannot leave the archive with a header promising more bytes than follow it.
        data = handle.read()
    info = tarfile.TarInfo(arcname)
    info.size, info.mtime, info.mode = len(data), int(details.st_mtime), 0o644
    archive.addfile(info, io.BytesIO(data))
    return True


def _durable_replace(source: Path, target: Path) -> None:
    with source.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)
    with contextlib.suppress(OSError):
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
