"""Transport and headers: HTTPS with HSTS, nosniff, a server header without versions, CORS closed by default."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentkeep import __version__
from agentkeep.testing.mock_llm import MockLLM
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.cli import run_cli
from tests.support.server import ServerProcess


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 from the `openssl` CLI, made for this test."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class _TLSServer(ServerProcess):
    """`agentkeep serve --ssl-certfile --ssl-keyfile`, spoken to over HTTPS that trusts only `cert`."""

    def __init__(self, workdir: Path, env: dict[str, str], cert: Path, key: Path) -> None:
        super().__init__(MOCK_AGENT, workdir, env=env, args=["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)])
        self.client.close()
        self.url = f"https://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=60, verify=ssl.create_default_context(cafile=cert))


def _assert_safe_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers.get_list("server") == ["agentkeep"]
    assert __version__ not in response.headers["server"]


def test_https_serves_the_api_with_hsts(tmp_path: Path, mock_llm: MockLLM) -> None:
    """Over TLS: a run succeeds, every response has HSTS and nosniff, and plain HTTP gets no answer."""
    cert, key = _self_signed(tmp_path)
    with _TLSServer(tmp_path, server_env(mock_llm, f"sqlite:///{tmp_path / 'a.db'}"), cert, key) as server:
        run = server.client.post("/v1/runs", json={"message": "hi"})
        assert run.status_code == 200, run.text
        for response in (run, server.client.get("/health"), server.client.get("/v1/runs/missing")):
            assert response.headers["strict-transport-security"].startswith("max-age=")
            _assert_safe_headers(response)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=1)


def test_a_missing_certificate_file_is_a_one_line_usage_error(tmp_path: Path) -> None:
    """`--ssl-certfile` naming no file: exit 2 before binding, one line on stderr."""
    args = ["serve", MOCK_AGENT, "--ssl-certfile", "nope.pem", "--ssl-keyfile", "nope.key"]
    result = run_cli(*args, cwd=tmp_path, env={"OPENAI_API_KEY": "x"})
    assert result.returncode == 2 and result.stderr == "agentkeep: error: no such file: nope.pem\n"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One plain-HTTP server with the default settings, for the header checks."""
    tmp = tmp_path_factory.mktemp("plain")
    with MockLLM() as mock, ServerProcess(MOCK_AGENT, tmp, env=server_env(mock, f"sqlite:///{tmp / 'a.db'}")) as server:
        yield server


def test_plain_http_has_no_hsts_and_no_framework_version(plain: ServerProcess) -> None:
    """Without TLS there is no HSTS (it would be ignored and misleading); the other headers hold everywhere."""
    for response in (plain.client.get("/health"), plain.client.get("/nowhere"), plain.post_run(message="hi")):
        assert "strict-transport-security" not in response.headers
        _assert_safe_headers(response)
        assert "uvicorn" not in str(response.headers).lower()


def _preflight(server: ServerProcess, origin: str) -> httpx.Response:
    return server.client.options(
        "/v1/runs",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


def test_cors_is_closed_unless_origins_are_configured(plain: ServerProcess) -> None:
    """No AGENTKEEP_CORS_ORIGINS: no CORS header on a preflight or on a cross-origin request."""
    preflight = _preflight(plain, "https://evil.example")
    assert "access-control-allow-origin" not in preflight.headers
    simple = plain.client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_configured_cors_origins_are_allowed_and_others_are_not(tmp_path: Path, mock_llm: MockLLM) -> None:
    """AGENTKEEP_CORS_ORIGINS lists who may call from a browser; any other origin gets no CORS header."""
    env = server_env(mock_llm, f"sqlite:///{tmp_path / 'a.db'}", AGENTKEEP_CORS_ORIGINS="https://app.example")
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
        allowed = _preflight(server, "https://app.example")
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in allowed.headers
        refused = _preflight(server, "https://evil.example")
        assert "access-control-allow-origin" not in refused.headers
        run = server.client.post("/v1/runs", json={"message": "hi"}, headers={"Origin": "https://app.example"})
        assert run.headers["access-control-allow-origin"] == "https://app.example"
        _assert_safe_headers(run)
