"""`Workspace`: the file tools' folder on local disk (AGENTKEEP_WORKSPACE_DIR), which no path can leave.

Every path is resolved beneath the workspace's folder by `_beneath`: with openat2 RESOLVE_BENEATH |
RESOLVE_NO_MAGICLINKS where the kernel has it, otherwise realpath + commonpath (see `_beneath` for
the race that leaves). On top of that:

- a NUL byte, an absolute path outside the folder and a path that resolves outside are refused;
- reads open with O_NONBLOCK (a FIFO cannot hang the call) and accept only a regular file with a
  single link: a hard link (st_nlink > 1) may be a second name for a file outside the workspace;
- writes go to a temporary file created with O_EXCL | O_NOFOLLOW in the target's directory, then
  renamed over the target, so readers see the old or the new content, never half of it, and a
  symlink at the target is replaced rather than followed;
- reads and writes are capped at AGENTKEEP_FILE_MAX_BYTES (1 MiB by default).

A scoped workspace (`scoped("sessions/<user>/<session>")`) first walks from the root to its folder
one component at a time with O_NOFOLLOW, creating what is missing: a symlink planted on the way
(by `run_python` in another scope, say) is refused rather than followed, so the folder reached is
the one named, and every path is then resolved beneath it.

When agentkeep runs as root, what a scoped workspace creates belongs to `nobody` (65534), the user
`run_python`'s sandbox runs as, so code in the sandbox can change the files the tools wrote.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from agentkeep.tools._beneath import EscapeError, kernel_has_openat2, open_checked, openat2
from agentkeep.tools._errors import FileMissing, ToolFailure, ToolRefused
from agentkeep.tools.workspace import MAX_ENTRIES, MAX_LISTED, TEMPORARY, BaseWorkspace, FileInfo, child, shown

__all__ = ["SANDBOX_ALIAS", "SANDBOX_UID", "Workspace"]

SANDBOX_UID = 65534  # `nobody`: run_python's sandbox user
SANDBOX_ALIAS = "/workspace"  # where run_python sees the folder; accepted by the tools as the folder too
_MAX_PATH_CHARS = 4096
_STEP = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a symbolic link",
}


class Workspace(BaseWorkspace):
    """A directory the file tools are confined to; `folder` narrows it to one scope's folder.

    `use_openat2=None` picks openat2 when the kernel has it; False forces the fallback (tests).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_bytes: int = 1_048_576,
        use_openat2: bool | None = None,
        folder: str = "",
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.folder = folder.strip("/")
        if use_openat2 and not kernel_has_openat2():
            raise ValueError("this kernel has no usable openat2")
        self.use_openat2 = kernel_has_openat2() if use_openat2 is None else use_openat2
        self._owner = SANDBOX_UID if self.folder and os.geteuid() == 0 else None

    def scoped(self, folder: str) -> Self:
        return type(self)(
            self.root, max_bytes=self.max_bytes, use_openat2=self.use_openat2, folder=child(self.folder, folder)
        )

    # --- the tools ---

    def read_bytes(self, path: str) -> bytes:
        rel = self._relative(path)
        with contextlib.ExitStack() as stack:
            try:
                dir_fd, real = stack.enter_context(self._folder(create=False))
            except FileNotFoundError:  # a folder never written to: nothing in it exists
                raise FileMissing(f"{shown(path)} does not exist") from None
            fd = stack.enter_context(self._opened(dir_fd, real, rel, path, os.O_RDONLY))
            info = os.fstat(fd)
            kind = stat.S_IFMT(info.st_mode)
            if kind != stat.S_IFREG:
                raise ToolRefused(f"{shown(path)} is {_KINDS.get(kind, 'not a regular file')}, not a regular file")
            if info.st_nlink > 1:
                raise ToolRefused(
                    f"{shown(path)} has {info.st_nlink} hard links; a file with several names may be a "
                    "name for a file outside the workspace, so it is not read"
                )
            data = _read_at_most(fd, self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise ToolRefused(f"{shown(path)} is larger than the {self.max_bytes}-byte read limit")
        return data

    def write_text(self, path: str, content: str) -> int:
        data = content.encode("utf-8")
        if len(data) > self.max_bytes:
            raise ToolRefused(f"{len(data)} bytes is more than the {self.max_bytes}-byte write limit")
        rel = self._relative(path)
        parent, name = os.path.split(rel)
        if name in ("", ".", ".."):
            raise ToolRefused(f"{shown(path)} does not name a file")
        with self._folder() as (folder_fd, real):
            dir_fd = self._make_dirs(folder_fd, real, parent, path)
            try:
                _replace(dir_fd, name, data, path, self._owner)
            finally:
                os.close(dir_fd)
        return len(data)

    def list_dir(self, path: str = ".") -> list[str]:
        rel = self._relative(path)
        flags = os.O_RDONLY | os.O_DIRECTORY
        with self._folder() as (dir_fd, real), self._opened(dir_fd, real, rel, path, flags) as fd:
            names = sorted(name for name in os.listdir(fd) if not TEMPORARY.fullmatch(name))
            entries = [_describe(fd, name) for name in names[:MAX_ENTRIES]]
        if len(names) > MAX_ENTRIES:
            entries.append(f"… {len(names) - MAX_ENTRIES} more entries not shown")
        return entries

    # --- the files routes, the sweep and the sandbox ---

    def files(self, limit: int = MAX_LISTED) -> list[FileInfo]:
        found: list[FileInfo] = []
        try:
            with self._folder(create=False) as (dir_fd, _):
                for top, _dirs, names, top_fd in os.fwalk(".", dir_fd=dir_fd, follow_symlinks=False):
                    for name in names:
                        info = _lstat(top_fd, name)
                        if info is None or not stat.S_ISREG(info.st_mode) or TEMPORARY.fullmatch(name):
                            continue
                        path = posixpath.normpath(posixpath.join(top, name))
                        found.append(FileInfo(path, info.st_size, info.st_mtime))
                        if len(found) >= limit:
                            return sorted(found, key=lambda entry: entry.path)
        except FileNotFoundError:
            return []
        return sorted(found, key=lambda entry: entry.path)

    def subfolders(self) -> list[str]:
        try:
            with self._folder(create=False) as (dir_fd, _):
                fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    return sorted(name for name in os.listdir(fd) if _is_dir(fd, name))
                finally:
                    os.close(fd)
        except FileNotFoundError:
            return []

    def remove(self) -> None:
        if not self.folder:
            raise ValueError("the workspace root itself is never removed")
        parent, _, name = self.folder.rpartition("/")
        try:
            with self._folder(create=False, folder=parent) as (parent_fd, _):
                # fd-based: a symlink anywhere inside is unlinked, never followed.
                shutil.rmtree(name, dir_fd=parent_fd)
        except FileNotFoundError:
            return

    @contextlib.contextmanager
    def opened_folder(self) -> Iterator[int]:
        """An O_PATH descriptor of the folder (created if missing), for binding it into the sandbox."""
        with self._folder() as (fd, _):
            if self._owner is not None:  # fchown refuses an O_PATH descriptor: change it through a real one
                opened = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                try:
                    os.fchown(opened, self._owner, self._owner)
                finally:
                    os.close(opened)
            yield fd

    # --- paths ---

    def _relative(self, path: str) -> str:
        if not isinstance(path, str):
            raise ToolRefused("a path must be a string")
        if "\x00" in path:
            raise ToolRefused(f"{shown(path)} contains a NUL byte")
        if len(path) > _MAX_PATH_CHARS:
            raise ToolRefused(f"the path is longer than {_MAX_PATH_CHARS} characters")
        if not path.strip():
            return "."
        if os.path.isabs(path):
            # Accepted only when it spells a place under the folder; resolution still decides where it leads.
            for base in (str(self.root.absolute() / self.folder), os.path.join(self._real_root(), self.folder)):
                base = base.rstrip("/") or "/"
                if os.path.commonpath([base, path]) == base:
                    return os.path.relpath(path, base)
            if os.path.commonpath([SANDBOX_ALIAS, path]) == SANDBOX_ALIAS:
                return os.path.relpath(path, SANDBOX_ALIAS)
            raise ToolRefused(f"{shown(path)} is outside the workspace; use a path relative to it")
        return path

    def _real_root(self) -> str:
        return os.path.realpath(self.root)

    @contextlib.contextmanager
    def _folder(self, *, create: bool = True, folder: str | None = None) -> Iterator[tuple[int, str]]:
        """An O_PATH fd of the folder and its real path, walked to from the root without following a
        link; `FileNotFoundError` when it does not exist and `create` is False."""
        folder = self.folder if folder is None else folder
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        real = self._real_root()
        fd = os.open(real, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            parts = folder.split("/") if folder else []
            for depth, part in enumerate(parts, start=1):
                # Only the scope's own folder goes to the sandbox's user, not `sessions/` or the user's.
                step = self._enter(fd, part, create=create, own=depth == len(parts) and folder == self.folder)
                os.close(fd)
                fd = step
                real = os.path.join(real, part)
            yield fd, real
        finally:
            os.close(fd)

    def _enter(self, parent_fd: int, name: str, *, create: bool, own: bool) -> int:
        """The folder `name` inside `parent_fd`, made when missing and `create`; never through a link."""
        try:
            return os.open(name, _STEP, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise
        except OSError:
            raise _not_plain() from None
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent_fd)
            if own:
                self._own(parent_fd, name)
        try:
            return os.open(name, _STEP, dir_fd=parent_fd)
        except OSError:
            raise _not_plain() from None

    def _own(self, dir_fd: int, name: str) -> None:
        if self._owner is not None:
            os.chown(name, self._owner, self._owner, dir_fd=dir_fd, follow_symlinks=False)

    @contextlib.contextmanager
    def _opened(self, dir_fd: int, real: str, rel: str, shown_as: str, flags: int) -> Iterator[int]:
        fd = self._open(dir_fd, real, rel, shown_as, flags)
        try:
            yield fd
        finally:
            os.close(fd)

    def _open(self, dir_fd: int, real: str, rel: str, shown_as: str, flags: int) -> int:
        try:
            return self._open_raw(dir_fd, real, rel, flags)
        except OSError as exc:
            raise _os_failure(exc, shown_as) from None

    def _open_raw(self, dir_fd: int, real: str, rel: str, flags: int) -> int:
        # openat2, unlike openat, rejects O_PATH combined with anything but O_DIRECTORY/O_NOFOLLOW/O_CLOEXEC.
        flags |= os.O_CLOEXEC if flags & os.O_PATH else os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        if self.use_openat2:
            return openat2(dir_fd, rel, flags)
        return open_checked(real, rel, flags)

    def _make_dirs(self, folder_fd: int, real: str, parent: str, shown_as: str) -> int:
        """An O_PATH fd of `parent`, creating missing directories one checked step at a time."""
        flags = os.O_PATH | os.O_DIRECTORY
        parts = [part for part in parent.split("/") if part]
        fd = self._open(folder_fd, real, ".", shown_as, flags)
        for depth in range(1, len(parts) + 1):
            # Each step is resolved from the folder again, so a `..` or an in-workspace symlink
            # earlier in the path keeps its meaning and an escape anywhere is still caught.
            prefix = "/".join(parts[:depth])
            try:
                try:
                    step = self._open_raw(folder_fd, real, prefix, flags)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(parts[depth - 1], 0o755, dir_fd=fd)
                        self._own(fd, parts[depth - 1])
                    step = self._open_raw(folder_fd, real, prefix, flags)
            except OSError as exc:
                raise _os_failure(exc, shown_as) from None
            finally:
                os.close(fd)
            fd = step
        return fd


def _replace(dir_fd: int, name: str, data: bytes, shown_as: str, owner: int | None) -> None:
    temp = f".{name[:64]}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temp, flags, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        raise _os_failure(exc, shown_as) from None
    try:
        try:
            if owner is not None:
                os.fchown(fd, owner, owner)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        if isinstance(exc, IsADirectoryError):
            raise ToolFailure(f"{shown(shown_as)} is a directory") from None
        if isinstance(exc, OSError):
            raise _os_failure(exc, shown_as) from None
        raise


def _not_plain() -> ToolRefused:
    return ToolRefused("this run's workspace folder is not a plain directory, so it is not used")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _describe(dir_fd: int, name: str) -> str:
    info = _lstat(dir_fd, name)
    if info is None:
        return name
    if stat.S_ISDIR(info.st_mode):
        return f"{name}/"
    if stat.S_ISREG(info.st_mode):
        return f"{name} ({info.st_size} bytes)"
    return f"{name} ({_KINDS.get(stat.S_IFMT(info.st_mode), 'special file')})"


def _is_dir(dir_fd: int, name: str) -> bool:
    info = _lstat(dir_fd, name)
    return info is not None and stat.S_ISDIR(info.st_mode)


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _os_failure(exc: OSError, path: str) -> ToolFailure:
    quoted = shown(path)
    if isinstance(exc, EscapeError):
        return ToolRefused(f"{quoted} resolves outside the workspace")
    if exc.errno == errno.ENOENT:
        return FileMissing(f"{quoted} does not exist")
    if exc.errno in (errno.ENOTDIR, errno.EISDIR):
        return ToolFailure(f"{quoted}: a directory was expected where a file is, or the other way round")
    if exc.errno == errno.ELOOP:
        return ToolRefused(f"{quoted} goes through a symbolic link that is not allowed here")
    if exc.errno in (errno.ENXIO, errno.EWOULDBLOCK):
        return ToolRefused(f"{quoted} is not a regular file")
    if exc.errno == errno.ENAMETOOLONG:
        return ToolRefused(f"{quoted} has a name that is too long")
    return ToolFailure(f"{quoted}: {exc.strerror or type(exc).__name__}")
