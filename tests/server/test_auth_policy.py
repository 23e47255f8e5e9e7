"""AGENTKEEP_AUTH against the bound address: keys unless loopback, and no silent open server."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from agentkeep.server.auth import auth_required, is_loopback
from agentkeep.testing.mock_llm import MockLLM
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.cli import create_key, run_cli
from tests.support.server import ServerProcess, free_port


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    """A name other than `localhost` may resolve anywhere, so it counts as public."""
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("mode", "host", "required"),
    [
        ("auto", "127.0.0.1", False),
        ("auto", "0.0.0.0", True),
        ("auto", None, True),  # in process (Lambda, tests): no address known, so keys
        ("required", "127.0.0.1", True),
        ("required", "0.0.0.0", True),
        ("off", "0.0.0.0", False),
        ("off", "127.0.0.1", False),
    ],
)
def test_auto_requires_keys_everywhere_but_loopback(mode: str, host: str | None, required: bool) -> None:
    """The contract's table for AGENTKEEP_AUTH."""
    assert auth_required(mode, host) is required


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def test_auto_on_a_public_address_without_keys_refuses_to_start(tmp_path: Path) -> None:
    """`serve --host 0.0.0.0` with AGENTKEEP_AUTH=auto and no key: exit 2, one line, nothing bound."""
    port = free_port()
    env = {"AGENTKEEP_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "OPENAI_API_KEY": "x"}
    result = run_cli("serve", MOCK_AGENT, "--host", "0.0.0.0", "--port", str(port), cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "agentkeep keys create" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert _port_is_free(port)


def test_auto_on_a_public_address_with_a_key_serves_only_key_holders(tmp_path: Path, mock_llm: MockLLM) -> None:
    """Once a key exists, the same command starts and every /v1 request needs the key."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    key = create_key(url, tmp_path, "alice")
    with ServerProcess(MOCK_AGENT, tmp_path, env=server_env(mock_llm, url), args=["--host", "0.0.0.0"]) as server:
        assert server.post_run(message="hi").status_code == 401
        ok = server.client.post("/v1/runs", json={"message": "hi"}, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200, ok.text


def test_explicit_off_on_a_public_address_starts_with_a_loud_warning(tmp_path: Path, mock_llm: MockLLM) -> None:
    """AGENTKEEP_AUTH=off is obeyed on 0.0.0.0, and the log says plainly that anyone can call it."""
    env = server_env(mock_llm, f"sqlite:///{tmp_path / 'a.db'}", AGENTKEEP_AUTH="off")
    with ServerProcess(MOCK_AGENT, tmp_path, env=env, args=["--host", "0.0.0.0"]) as server:
        assert server.post_run(message="hi").status_code == 200
        events = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    warning = next(e for e in events if e["event"] == "auth.disabled_on_public_address")
    assert warning["level"] == "warning" and "anyone" in warning["warning"]


def test_required_starts_without_keys_and_says_so(tmp_path: Path, mock_llm: MockLLM) -> None:
    """AGENTKEEP_AUTH=required (the deployment templates' setting) starts with no key yet, warns, answers 401."""
    env = server_env(mock_llm, f"sqlite:///{tmp_path / 'a.db'}", AGENTKEEP_AUTH="required")
    with ServerProcess(MOCK_AGENT, tmp_path, env=env, args=["--host", "0.0.0.0"]) as server:
        assert server.post_run(message="hi").status_code == 401
        assert '"auth.no_keys"' in server.output()
