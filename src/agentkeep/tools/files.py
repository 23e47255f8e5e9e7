"""`read_file`, `write_file`, `list_files`: file tools that cannot leave the workspace.

Every path is resolved beneath the workspace root (AGENTKEEP_WORKSPACE_DIR) by `_beneath`: with
openat2 RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS where the kernel has it, otherwise realpath +
commonpath (see `_beneath` for the race that leaves). On top of that:

- a NUL byte, an absolute path outside the root and a path that resolves outside are refused;
- reads open with O_NONBLOCK (a FIFO cannot hang the call) and accept only a regular file with a
  single link: a hard link (st_nlink > 1) may be a second name for a file outside the workspace;
- writes go to a temporary file created with O_EXCL | O_NOFOLLOW in the target's directory, then
  renamed over the target, so readers see the old or the new content, never half of it, and a
  symlink at the target is replaced rather than followed;
- reads and writes are capped at AGENTKEEP_FILE_MAX_BYTES (1 MiB by default).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from agentkeep.tools._beneath import EscapeError, kernel_has_openat2, open_checked, openat2
from agentkeep.tools._config import tool_settings
from agentkeep.tools._errors import ToolFailure, ToolRefused

__all__ = ["Workspace", "default_workspace", "list_files", "read_file", "write_file"]

_MAX_PATH_CHARS = 4096
_MAX_ENTRIES = 1000
_SHOWN_CHARS = 200
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a symbolic link",
}


class Workspace:
    """A directory the file tools are confined to.

    `use_openat2=None` picks openat2 when the kernel has it; False forces the fallback (tests).
    """

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int = 1_048_576, use_openat2: bool | None = None):
        self.root = Path(root)
        self.max_bytes = max_bytes
        if use_openat2 and not kernel_has_openat2():
            raise ValueError("this kernel has no usable openat2")
        self.use_openat2 = kernel_has_openat2() if use_openat2 is None else use_openat2

    def read_text(self, path: str) -> str:
        """The UTF-8 text of a regular file (undecodable bytes replaced)."""
        rel = self._relative(path)
        with self._root() as (root_fd, root), self._opened(root_fd, root, rel, path, os.O_RDONLY) as fd:
            info = os.fstat(fd)
            kind = stat.S_IFMT(info.st_mode)
            if kind != stat.S_IFREG:
                raise ToolRefused(f"{_shown(path)} is {_KINDS.get(kind, 'not a regular file')}, not a regular file")
            if info.st_nlink > 1:
                raise ToolRefused(
                    f"{_shown(path)} has {info.st_nlink} hard links; a file with several names may be a "
                    "name for a file outside the workspace, so it is not read"
                )
            data = _read_at_most(fd, self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise ToolRefused(f"{_shown(path)} is larger than the {self.max_bytes}-byte read limit")
        return data.decode("utf-8", errors="replace")

    def write_text(self, path: str, content: str) -> int:
        """Replace (or create) a file atomically with `content`; returns the bytes written."""
        data = content.encode("utf-8")
        if len(data) > self.max_bytes:
            raise ToolRefused(f"{len(data)} bytes is more than the {self.max_bytes}-byte write limit")
        rel = self._relative(path)
        parent, name = os.path.split(rel)
        if name in ("", ".", ".."):
            raise ToolRefused(f"{_shown(path)} does not name a file")
        with self._root() as (root_fd, root):
            dir_fd = self._make_dirs(root_fd, root, parent, path)
            try:
                _replace(dir_fd, name, data, path)
            finally:
                os.close(dir_fd)
        return len(data)

    def list_dir(self, path: str = ".") -> list[str]:
        """Entries of a directory, sorted: `name/` for a directory, `name (N bytes)` for a file."""
        rel = self._relative(path)
        flags = os.O_RDONLY | os.O_DIRECTORY
        with self._root() as (root_fd, root), self._opened(root_fd, root, rel, path, flags) as fd:
            names = sorted(os.listdir(fd))
            entries = [_describe(fd, name) for name in names[:_MAX_ENTRIES]]
        if len(names) > _MAX_ENTRIES:
            entries.append(f"… {len(names) - _MAX_ENTRIES} more entries not shown")
        return entries

    def _relative(self, path: str) -> str:
        if not isinstance(path, str):
            raise ToolRefused("a path must be a string")
        if "\x00" in path:
            raise ToolRefused(f"{_shown(path)} contains a NUL byte")
        if len(path) > _MAX_PATH_CHARS:
            raise ToolRefused(f"the path is longer than {_MAX_PATH_CHARS} characters")
        if not path.strip():
            return "."
        if os.path.isabs(path):
            # Accepted only when it spells a place under the root; resolution still decides where it leads.
            for base in (str(self.root.absolute()), self._real_root()):
                if os.path.commonpath([base, path]) == base:
                    return os.path.relpath(path, base)
            raise ToolRefused(f"{_shown(path)} is outside the workspace; use a path relative to it")
        return path

    def _real_root(self) -> str:
        return os.path.realpath(self.root)

    @contextlib.contextmanager
    def _root(self) -> Iterator[tuple[int, str]]:
        self.root.mkdir(parents=True, exist_ok=True)
        real = self._real_root()
        fd = os.open(real, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd, real
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _opened(self, root_fd: int, root: str, rel: str, shown: str, flags: int) -> Iterator[int]:
        fd = self._open(root_fd, root, rel, shown, flags)
        try:
            yield fd
        finally:
            os.close(fd)

    def _open(self, root_fd: int, root: str, rel: str, shown: str, flags: int) -> int:
        try:
            return self._open_raw(root_fd, root, rel, flags)
        except OSError as exc:
            raise _os_failure(exc, shown) from None

    def _open_raw(self, root_fd: int, root: str, rel: str, flags: int) -> int:
        # openat2, unlike openat, rejects O_PATH combined with anything but O_DIRECTORY/O_NOFOLLOW/O_CLOEXEC.
        flags |= os.O_CLOEXEC if flags & os.O_PATH else os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        if self.use_openat2:
            return openat2(root_fd, rel, flags)
        return open_checked(root, rel, flags)

    def _make_dirs(self, root_fd: int, root: str, parent: str, shown: str) -> int:
        """An O_PATH fd of `parent`, creating missing directories one checked step at a time."""
        flags = os.O_PATH | os.O_DIRECTORY
        parts = [part for part in parent.split("/") if part]
        fd = self._open(root_fd, root, ".", shown, flags)
        for depth in range(1, len(parts) + 1):
            # Each step is resolved from the root again, so a `..` or an in-workspace symlink
            # earlier in the path keeps its meaning and an escape anywhere is still caught.
            prefix = "/".join(parts[:depth])
            try:
                try:
                    step = self._open_raw(root_fd, root, prefix, flags)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(parts[depth - 1], 0o755, dir_fd=fd)
                    step = self._open_raw(root_fd, root, prefix, flags)
            except OSError as exc:
                raise _os_failure(exc, shown) from None
            finally:
                os.close(fd)
            fd = step
        return fd


def _replace(dir_fd: int, name: str, data: bytes, shown: str) -> None:
    temp = f".{name[:64]}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temp, flags, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        raise _os_failure(exc, shown) from None
    try:
        try:
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
            raise ToolFailure(f"{_shown(shown)} is a directory") from None
        if isinstance(exc, OSError):
            raise _os_failure(exc, shown) from None
        raise


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


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _os_failure(exc: OSError, path: str) -> ToolFailure:
    shown = _shown(path)
    if isinstance(exc, EscapeError):
        return ToolRefused(f"{shown} resolves outside the workspace")
    if exc.errno == errno.ENOENT:
        return ToolFailure(f"{shown} does not exist")
    if exc.errno in (errno.ENOTDIR, errno.EISDIR):
        return ToolFailure(f"{shown}: a directory was expected where a file is, or the other way round")
    if exc.errno == errno.ELOOP:
        return ToolRefused(f"{shown} goes through a symbolic link that is not allowed here")
    if exc.errno in (errno.ENXIO, errno.EWOULDBLOCK):
        return ToolRefused(f"{shown} is not a regular file")
    if exc.errno == errno.ENAMETOOLONG:
        return ToolRefused(f"{shown} has a name that is too long")
    return ToolFailure(f"{shown}: {exc.strerror or type(exc).__name__}")


def _shown(path: str) -> str:
    text = path if len(path) <= _SHOWN_CHARS else path[:_SHOWN_CHARS] + "…"
    return repr(text.replace("\x00", "\\0"))


def default_workspace() -> Workspace:
    """The workspace the settings name (AGENTKEEP_WORKSPACE_DIR, AGENTKEEP_FILE_MAX_BYTES)."""
    settings = tool_settings()
    return Workspace(settings.workspace_dir, max_bytes=settings.file_max_bytes)


def read_file(path: str) -> str:
    """Read a text file from the workspace.

    Paths are relative to the workspace directory; nothing outside it can be read (no `..`
    escapes, no symbolic links that lead out, no devices or pipes). Files over 1 MB are refused.

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
