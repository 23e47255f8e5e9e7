"""`agentkeep serve` as a real subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

AGENTS_DIR = Path(__file__).resolve().parent.parent / "agents"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A running `agentkeep serve`; its stdout and stderr are kept in files for assertions."""

    def __init__(
        self,
        target: str,
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        command: str = "serve",
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.stdout_path = workdir / f"server-{self.port}.out"
        self.stderr_path = workdir / f"server-{self.port}.err"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKEEP_")}
        full_env.update({"AGENTKEEP_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1"})
        full_env.update(env or {})
        cmd = [sys.executable, "-m", "agentkeep", command, target, "--port", str(self.port), *(args or [])]
        self._stdout = self.stdout_path.open("wb")
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=workdir, env=full_env, stdout=self._stdout, stderr=self._stderr)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                if self.client.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout}s: {self.output()}")

    def post_run(self, **body: Any) -> httpx.Response:
        return self.client.post("/v1/runs", json=body)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        self._stdout.flush()
        self._stderr.flush()
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.client.close()
        self._stdout.close()
        self._stderr.close()

    def __enter__(self) -> ServerProcess:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
