"""Secrets stay secret: held as secret types, and never in logs, error bodies, /health, /metrics or the schema.

Canary values are planted in every place a secret comes from (the environment, `.env`, a secrets
directory, an API key in use, a provider error that echoes the provider key back, as OpenAI's
does) and then looked for in everything the server says.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agentkeep.config import Settings
from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.cli import make_key
from tests.support.server import ServerProcess

PROVIDER_KEY = "sk-canary-provider-8d41f0c2a7"
DOTENV_SECRET = "whsec-canary-dotenv-3b9e71"
FILE_SECRET = "canary-secrets-dir-c05d2e"


def test_secrets_from_env_dotenv_and_secrets_files_are_held_as_secret_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each source fills a SecretStr; repr, str and a JSON dump of the settings show none of the values."""
    (tmp_path / ".env").write_text(f"AGENTKEEP_WEBHOOK_SECRET={DOTENV_SECRET}\n")
    secrets_dir = tmp_path / "secrets"  # the layout of /run/secrets/NAME
    secrets_dir.mkdir()
    (secrets_dir / "agentkeep_redis_url").write_text(f"redis://:{FILE_SECRET}@127.0.0.1:6379/0")
    monkeypatch.setenv("AGENTKEEP_DATABASE_URL", "postgresql://app:canary-env-pw@127.0.0.1/db")
    settings = Settings(_env_file=tmp_path / ".env", _secrets_dir=secrets_dir)  # type: ignore[call-arg]
    assert settings.webhook_secret is not None and settings.webhook_secret.get_secret_value() == DOTENV_SECRET
    assert settings.redis_url is not None and FILE_SECRET in settings.redis_url.get_secret_value()
    assert "canary-env-pw" in settings.database_url.get_secret_value()
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "canary" not in shown
    assert {DOTENV_SECRET, settings.redis_url.get_secret_value()} <= set(settings.secret_values())


def test_no_secret_reaches_logs_errors_health_metrics_or_the_schema(tmp_path: Path) -> None:
    """After successful and failed runs (sync and streamed) and every kind of error, no canary anywhere."""
    (tmp_path / ".env").write_text(f"AGENTKEEP_WEBHOOK_SECRET={DOTENV_SECRET}\n")
    url = f"sqlite:///{tmp_path / 'agentkeep.db'}"
    api_key = make_key(url, "alice")
    echo = f"Incorrect API key provided: {PROVIDER_KEY}. Find your key at platform.openai.com."
    seen: list[str] = []
    with MockLLM([Reply.error(401, echo), Reply.text("fine"), Reply.error(401, echo)]) as mock:
        env = server_env(mock, url, AGENTKEEP_AUTH="required", AGENTKEEP_MAX_MESSAGE_CHARS="100")
        env["OPENAI_API_KEY"] = PROVIDER_KEY
        with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
            auth = {"Authorization": f"Bearer {api_key}"}

            def keep(response: httpx.Response) -> httpx.Response:
                seen.append(f"{response.status_code} {response.headers} {response.text}")
                return response

            failed = keep(server.client.post("/v1/runs", json={"message": "hi"}, headers=auth))
            assert failed.status_code >= 400 and failed.json()["error"]["type"] == "model_error"
            ok = keep(server.client.post("/v1/runs", json={"message": "hi"}, headers=auth))
            assert ok.status_code == 200
            keep(server.client.get(f"/v1/runs/{ok.json()['run_id']}", headers=auth))
            body = {"message": "hi", "stream": True}
            with server.client.stream("POST", "/v1/runs", json=body, headers=auth) as streamed:
                seen.append("".join(streamed.iter_text()))
            assert "run.failed" in seen[-1]
            for method, path, kwargs in [
                ("GET", "/health", {}),
                ("GET", "/ready", {}),
                ("GET", "/metrics", {}),
                ("GET", "/openapi.json", {}),
                ("GET", "/docs", {}),
                ("GET", "/v1/usage", {"headers": auth}),
                ("GET", "/v1/stats", {"headers": auth}),
                ("GET", "/v1/sessions/none", {"headers": auth}),
                ("PUT", "/v1/runs", {"headers": auth}),
                ("GET", "/nowhere", {}),
                ("POST", "/v1/runs", {"headers": auth, "content": b"{broken"}),
                ("POST", "/v1/runs", {"headers": auth, "json": {"message": "x" * 101}}),
                ("POST", "/v1/runs", {"headers": auth, "json": {"message": 1}}),
                ("POST", "/v1/runs", {"headers": {"Authorization": f"Bearer {api_key}x"}, "json": {"message": "a"}}),
                ("POST", "/v1/runs", {"headers": {"Authorization": f"Bearer {PROVIDER_KEY}"}, "json": {}}),
            ]:
                keep(server.client.request(method, path, **kwargs))  # type: ignore[arg-type]
            logs = server.output()
    secret_part = api_key.split("_", 2)[2]
    everything = "\n".join(seen)
    for canary in (PROVIDER_KEY, DOTENV_SECRET, secret_part):
        assert canary not in everything, canary
        assert canary not in logs, canary
    # The provider's echo of its key did reach the log pipeline (in the logged exception), and was removed there.
    assert "Incorrect API key provided: [REDACTED]" in logs
