"""`agentkeep backup` while a server takes writes, then `agentkeep restore`: nothing acknowledged is lost."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agentkeep.testing.mock_llm import MockLLM
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.cli import run_cli
from tests.support.server import ServerProcess

_WRITERS = 2


@dataclass
class _Load:
    """Threads posting runs, each on a new session, recording when each was acknowledged."""

    url: str
    acked: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic time, session id, message)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def writer(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = 0
            while not self.stop.is_set():
                sid, message = f"w{n}-{i}", f"message {i} from writer {n}"
                response = client.post("/v1/runs", json={"message": message, "session_id": sid})
                if response.status_code == 200:
                    with self.lock:
                        self.acked.append((time.monotonic(), sid, message))
                else:
                    self.errors.append(response.text)
                i += 1

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            assert time.monotonic() < deadline, f"only {self.count()} runs acknowledged: {self.errors[:3]}"
            time.sleep(0.01)


def test_a_backup_under_write_load_restores_every_acknowledged_session(tmp_path: Path) -> None:
    """Sessions acknowledged before `backup` started are all in the restored database, with their messages;
    restore is refused while the server runs, and sessions written after the backup are gone after it."""
    with MockLLM() as mock_llm:
        _backup_under_load(tmp_path, mock_llm)


def _backup_under_load(tmp_path: Path, mock_llm: MockLLM) -> None:
    db_url = f"sqlite:///{tmp_path / 'agentkeep.db'}"
    cli_env = {"AGENTKEEP_DATABASE_URL": db_url}
    env = server_env(
        mock_llm, db_url, AGENTKEEP_RATE_LIMIT="1000000/minute", AGENTKEEP_READ_RATE_LIMIT="1000000/minute"
    )
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
        load = _Load(server.url)
        threads = [threading.Thread(target=load.writer, args=(n,), daemon=True) for n in range(_WRITERS)]
        for thread in threads:
            thread.start()
        try:
            load.wait_for(30)
            started = time.monotonic()
            backup = run_cli("backup", "snapshot.db", cwd=tmp_path, env=cli_env)
            done = time.monotonic()
            during = sum(1 for t, _, _ in load.acked if started <= t <= done)
            load.wait_for(load.count() + 10)  # and the server kept writing after it
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert backup.returncode == 0, backup.stderr
        assert "integrity ok" in backup.stdout
        assert during > 0, "no run was acknowledged while the backup ran: it was not taken under load"
        refused = run_cli("restore", "snapshot.db", cwd=tmp_path, env=cli_env)
        assert refused.returncode == 1 and "in use" in refused.stderr and refused.stderr.count("\n") == 1

    before = [(sid, message) for t, sid, message in load.acked if t < started]
    after = [sid for t, sid, _ in load.acked if t > done]
    assert len(before) >= 30 and after and not load.errors
    restored = run_cli("restore", "snapshot.db", cwd=tmp_path, env=cli_env)
    assert restored.returncode == 0, restored.stderr

    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
        for sid, message in before:
            session = server.client.get(f"/v1/sessions/{sid}")
            assert session.status_code == 200, (sid, session.text)
            assert [m["content"] for m in session.json()["messages"] if m["role"] == "user"] == [message]
        for sid in after:
            assert server.client.get(f"/v1/sessions/{sid}").status_code == 404
