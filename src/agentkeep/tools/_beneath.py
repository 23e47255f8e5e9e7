"""Open a path beneath a directory: by the kernel's promise where it can give one, else by checks.

`openat2(2)` (Linux 5.6+) with RESOLVE_BENEATH resolves every component, symlinks and `..`
included, relative to a directory fd and fails with EXDEV the moment resolution would leave it;
RESOLVE_NO_MAGICLINKS also refuses /proc's magic links. The check and the open are one system
call, so nothing can swap a directory for a symlink in between. Python has no binding, so it is
called through ctypes.

Without it (old kernels, seccomp filters that block the call) `open_checked` falls back to
realpath + commonpath and then O_NOFOLLOW on the last component. That leaves a race: between the
realpath and the open, a directory on the way can be replaced by a symlink that leads out. The
fallback narrows it by asking the kernel, after the open, where the descriptor really points
(/proc/self/fd) and refusing when that is outside; where /proc is not mounted even that is
unavailable and the race stays open. tests/tools/test_files_race.py measures both.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08

# openat2 arrived after the syscall tables were unified, so it is 437 on every architecture we run on.
_NR_OPENAT2 = 437
_ARCHES = frozenset({"x86_64", "aarch64", "armv7l", "riscv64", "ppc64le", "s390x", "i686"})
_EAGAIN_RETRIES = 8


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)


class EscapeError(OSError):
    """The path resolves outside the directory it must stay beneath."""


def openat2(dirfd: int, path: str, flags: int, mode: int = 0) -> int:
    """`openat2(dirfd, path, {flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS})`.

    Raises `EscapeError` (EXDEV, or ELOOP from a magic link) when resolution would leave `dirfd`.
    """
    how = _OpenHow(flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
    raw = os.fsencode(path)
    for _ in range(_EAGAIN_RETRIES):
        fd: int = _libc.syscall(
            ctypes.c_long(_NR_OPENAT2),
            ctypes.c_long(dirfd),
            ctypes.c_char_p(raw),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return fd
        code = ctypes.get_errno()
        # The kernel answers EAGAIN when a rename raced a `..` lookup; asking again is the documented remedy.
        if code != errno.EAGAIN:
            break
    if code == errno.EXDEV:
        raise EscapeError(code, "resolves outside the workspace", path)
    raise OSError(code, os.strerror(code), path)


@functools.cache
def kernel_has_openat2() -> bool:
    """Whether openat2 works here (kernel new enough and not filtered by seccomp)."""
    if platform.system() != "Linux" or platform.machine() not in _ARCHES:
        return False
    try:
        fd = openat2(-100, "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # AT_FDCWD
    except EscapeError:
        return True  # "/" is absolute, so RESOLVE_BENEATH refused it: the call exists and works
    except OSError:
        return False
    os.close(fd)
    return True


def open_checked(root: str, path: str, flags: int, mode: int = 0) -> int:
    """The fallback: realpath + commonpath, O_NOFOLLOW, then verify where the fd really points.

    `root` must already be a real path (no symlinks).
    """
    target = os.path.realpath(os.path.join(root, path))
    if not _is_beneath(root, target):
        raise EscapeError(errno.EXDEV, "resolves outside the workspace", path)
    fd = os.open(target, flags | os.O_NOFOLLOW, mode)
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return fd  # no /proc: the race documented above stays open
    if not _is_beneath(root, opened.removesuffix(" (deleted)")):
        os.close(fd)
        raise EscapeError(errno.EXDEV, "resolves outside the workspace", path)
    return fd


def _is_beneath(root: str, target: str) -> bool:
    # commonpath compares whole components, so /data2 is not beneath /data (a startswith check says it is).
    return os.path.commonpath([root, target]) == root
