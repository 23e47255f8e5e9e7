"""run_python: code runs under bubblewrap, and every kind of abuse stays inside the sandbox."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.tools import Sandbox, SandboxLimits, ToolFailure, run_python
from agentkeep.tools.sandbox import find_bwrap

MARKER = "<run_python>"  # appears in the sandboxed interpreter's command line (the prelude)


@pytest.fixture(scope="module")
def bwrap() -> str:
    """The bwrap binary; without one these tests skip (and fail under CI=true)."""
    found = find_bwrap()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("bubblewrap is not installed (required under CI=true)")
        pytest.skip("bubblewrap (bwrap) is not installed")
    try:
        probe = asyncio.run(Sandbox(bwrap=found).run("print('ok')"))
    except ToolFailure as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(exc.message)
    assert probe["stdout"] == "ok\n", probe
    return found


def _sandbox_processes() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if MARKER.encode() in cmdline:
                pids.append(int(entry))
    return pids


def _wait_until_no_sandbox_process(seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def sandbox(bwrap: str) -> Iterator[Sandbox]:
    """A sandbox with a short deadline; afterwards no sandboxed process may be left running."""
    yield Sandbox(SandboxLimits(timeout_s=3.0), bwrap=bwrap)
    assert _wait_until_no_sandbox_process() == []


async def test_runs_code_and_reports_exit_code_and_output(sandbox: Sandbox) -> None:
    """stdout, stderr and the exit code come back as the program produced them."""
    result = await sandbox.run("import sys\nprint('out', 6 * 7)\nprint('err', file=sys.stderr)\nsys.exit(3)")
    assert result == {"exit_code": 3, "stdout": "out 42\n", "stderr": "err\n", "truncated": False, "timed_out": False}


async def test_runs_as_an_unprivileged_user_without_capabilities(sandbox: Sandbox) -> None:
    """Inside, the code is uid 65534 with an empty effective capability set."""
    code = "import os\nprint(os.getuid())\nprint([l for l in open('/proc/self/status') if l.startswith('CapEff')][0])"
    result = await sandbox.run(code)
    assert result["stdout"].splitlines()[0] == "65534"
    assert result["stdout"].split()[-1] == "0000000000000000"


async def test_no_network(sandbox: Sandbox) -> None:
    """A listener on the host's loopback is unreachable from inside; only a down loopback exists."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[object] = []
    listener.settimeout(0.2)

    def accept_loop() -> None:
        while not done.is_set():
            try:
                accepted.append(listener.accept())
            except OSError:
                continue

    done = threading.Event()
    thread = threading.Thread(target=accept_loop)
    thread.start()
    try:
        code = (
            "import socket\nprint(socket.if_nameindex())\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('CONNECTED')\n"
            "except OSError as e:\n    print('blocked', type(e).__name__)\n"
        )
        result = await sandbox.run(code)
    finally:
        done.set()
        thread.join()
        listener.close()
    assert "blocked" in result["stdout"]
    assert "CONNECTED" not in result["stdout"]
    assert "[(1, 'lo')]" in result["stdout"]
    assert accepted == []


async def test_cannot_read_host_files(sandbox: Sandbox, tmp_path: Path) -> None:
    """The host's files (a secret in tmp, /etc, /root, the project) are not there to read."""
    secret = tmp_path / "secret.txt"
    secret.write_text("HOST-SECRET")
    secret.chmod(0o644)
    paths = [str(secret), "/etc/passwd", "/etc/shadow", "/root", str(Path.cwd()), "/home", "/var/log"]
    code = (
        "import os\n"
        f"for p in {paths!r}:\n"
        "    try:\n        print(p, 'READ', open(p).read() if os.path.isfile(p) else os.listdir(p))\n"
        "    except OSError as e:\n        print(p, 'denied', type(e).__name__)\n"
    )
    result = await sandbox.run(code)
    assert "HOST-SECRET" not in result["stdout"]
    assert "READ" not in result["stdout"], result["stdout"]
    assert result["stdout"].count("denied") == len(paths)


async def test_can_write_only_to_its_private_tmp(sandbox: Sandbox, tmp_path: Path) -> None:
    """Writes to /, /usr, /dev, /etc and the host's tmp fail; /tmp works and is not the host's."""
    targets = ["/x", "/usr/x", "/dev/x", "/dev/shm/x", "/etc/x", str(tmp_path / "x")]
    code = (
        f"for p in {targets!r}:\n"
        "    try:\n        open(p, 'w').write('x')\n        print(p, 'WROTE')\n"
        "    except OSError as e:\n        print(p, 'denied')\n"
        "open('/tmp/ok', 'w').write('fine')\nprint('tmp', open('/tmp/ok').read())\n"
    )
    result = await sandbox.run(code)
    assert "WROTE" not in result["stdout"], result["stdout"]
    assert "tmp fine" in result["stdout"]
    assert not (tmp_path / "x").exists()
    assert not Path("/tmp/ok").exists() or Path("/tmp/ok").read_text() != "fine"


async def test_fork_bomb_is_contained(sandbox: Sandbox) -> None:
    """Forking forever hits the process limit; the host can still start processes; all are killed."""
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    started = time.monotonic()
    result = await sandbox.run(code)
    assert result["timed_out"] is True
    assert time.monotonic() - started < 3.0 + 3
    assert subprocess.run(["true"], timeout=5).returncode == 0
    assert _wait_until_no_sandbox_process() == []


async def test_process_limit_stops_forking(sandbox: Sandbox) -> None:
    """The 32-process limit is enforced: forking stops with EAGAIN well before 100 children."""
    code = (
        "import os, time\nn = 0\ntry:\n    for _ in range(100):\n        if os.fork() == 0:\n"
        "            time.sleep(2)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n"
        "    print('stopped at', n, e.errno)\n"
    )
    result = await sandbox.run(code)
    assert result["stdout"].startswith("stopped at"), result
    assert int(result["stdout"].split()[2]) < 32


async def test_memory_bomb_is_contained(sandbox: Sandbox) -> None:
    """Allocating past the address-space limit fails with MemoryError inside; the call returns."""
    result = await sandbox.run("chunks = []\nwhile True:\n    chunks.append(bytearray(50_000_000))\n")
    assert result["exit_code"] == 1
    assert "MemoryError" in result["stderr"]
    assert result["timed_out"] is False


async def test_infinite_loop_is_killed_at_the_deadline(sandbox: Sandbox) -> None:
    """A busy loop (and a child it started) is killed when the wall clock runs out."""
    code = "import os\nif os.fork() == 0:\n    while True: pass\nwhile True:\n    pass\n"
    started = time.monotonic()
    result = await sandbox.run(code)
    elapsed = time.monotonic() - started
    assert result["timed_out"] is True
    assert result["exit_code"] != 0
    assert 3.0 <= elapsed < 3.0 + 3


async def test_big_files_and_tmp_are_capped(sandbox: Sandbox) -> None:
    """One file cannot pass the file-size limit, and /tmp as a whole is a small private tmpfs."""
    code = (
        "import os\nblock = b'x' * (1 << 20)\ntry:\n    with open('/tmp/big', 'wb') as f:\n"
        "        for _ in range(100):\n            f.write(block)\nexcept OSError as e:\n"
        "    print('stopped at', os.path.getsize('/tmp/big') >> 20, 'MiB')\n"
    )
    result = await sandbox.run(code)
    assert result["stdout"].startswith("stopped at"), result
    assert int(result["stdout"].split()[2]) <= 16


async def test_output_is_truncated(sandbox: Sandbox) -> None:
    """A flood of output is cut at the cap and says so; the program is not blocked by a full pipe."""
    result = await sandbox.run("import sys\nsys.stdout.write('x' * 5_000_000)\nprint('done', file=sys.stderr)")
    assert result["truncated"] is True
    assert len(result["stdout"]) == 65536
    assert result["stderr"] == "done\n"
    assert result["exit_code"] == 0


async def test_without_bubblewrap_it_refuses_and_runs_nothing(tmp_path: Path) -> None:
    """No bwrap: a clear ToolFailure, and the code never ran (it would have created a file)."""
    sandbox = Sandbox()
    sandbox.bwrap = None
    marker = tmp_path / "ran"
    with pytest.raises(ToolFailure, match="bubblewrap"):
        await sandbox.run(f"open({str(marker)!r}, 'w').write('x')")
    assert not marker.exists()


async def test_a_sandbox_that_cannot_start_is_reported() -> None:
    """When bwrap itself fails (no user namespaces, say), the error is a ToolFailure naming it."""
    # Outside pytest's private tmp: when the suite runs as root, bwrap is started as nobody.
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o755)
        fake = Path(directory) / "bwrap"
        fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
        fake.chmod(0o755)
        with pytest.raises(ToolFailure, match="sandbox could not start: bwrap: No permissions"):
            await Sandbox(bwrap=str(fake)).run("print(1)")


async def test_public_run_python_uses_the_settings(bwrap: str, tool_env: pytest.MonkeyPatch) -> None:
    """run_python reads AGENTKEEP_SANDBOX_TIMEOUT_S: a loop is killed after that long."""
    tool_env.setenv("AGENTKEEP_SANDBOX_TIMEOUT_S", "1")
    started = time.monotonic()
    result = await run_python("while True:\n    pass\n")
    assert result["timed_out"] is True
    assert time.monotonic() - started < 1 + 3
    assert (await run_python("print(sum(range(10)))"))["stdout"] == "45\n"
