"""SQL injection: payloads in every string the API takes are stored or refused as data, never run.

Each backend gets one server requiring keys, one of them for a user whose name is itself a payload.
Every payload goes through messages, metadata (keys and values), session ids (body, path and query),
run ids, agent names, webhook URLs and `user_id`; afterwards every table is still there with exactly
the rows the accepted requests made, and what was stored reads back byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from agentkeep.testing.mock_llm import MockLLM
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.cli import create_key, make_key
from tests.support.server import ServerProcess

PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    '" OR ""="',
    "'; DROP TABLE agentkeep_sessions; --",
    "x'); DROP TABLE agentkeep_runs; --",
    "1; DELETE FROM agentkeep_api_keys",
    "' UNION SELECT key_id, secret_sha256 FROM agentkeep_api_keys --",
    "admin'--",
    "'; SELECT pg_sleep(10); --",
    "$$; DROP TABLE agentkeep_schema_version; $$",
    "\\'; UPDATE agentkeep_runs SET user_id='alice'; --",
    "%' AND user_id LIKE '%",
    "');ATTACH DATABASE '/tmp/pwn.db' AS pwn;--",
]
TABLES = [
    "agentkeep_schema_version",
    "agentkeep_sessions",
    "agentkeep_session_history",
    "agentkeep_runs",
    "agentkeep_api_keys",
    "agentkeep_ledger",
]
EVIL_USER = "robert');DROP_TABLE_agentkeep_api_keys;--"


@dataclass
class Target:
    server: ServerProcess
    url: str
    alice: str
    evil: str
    admin: str
    runs: int = 0  # runs accepted so far, to check the runs table against

    def call(self, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
        return self.server.client.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kw)

    def rows(self) -> dict[str, int]:
        engine = sa.create_engine(self.url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
        finally:
            engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("injection")
    url = f"sqlite:///{tmp / 'agentkeep.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    evil = create_key(url, tmp, EVIL_USER)  # through the real CLI: the name is an argument
    alice, admin = make_key(url, "alice"), make_key(url, "ops", admin=True)
    with MockLLM() as mock:
        env = server_env(
            mock,
            url,
            AGENTKEEP_AUTH="required",
            AGENTKEEP_RATE_LIMIT="100000/minute",
            AGENTKEEP_READ_RATE_LIMIT="100000/minute",
        )
        with ServerProcess(MOCK_AGENT, tmp, env=env) as server:
            target = Target(server, url, alice, evil, admin)
            baseline = target.call("POST", "/v1/runs", alice, json={"message": "baseline", "session_id": "keep-me"})
            assert baseline.status_code == 200
            target.runs = 1
            yield target


def _user_messages(target: Target, key: str, session_id: str) -> list[str]:
    response = target.call("GET", f"/v1/sessions/{session_id}", key)
    assert response.status_code == 200, response.text
    return [m["content"] for m in response.json()["messages"] if m["role"] == "user"]


def test_payloads_in_messages_and_metadata_are_stored_verbatim(target: Target) -> None:
    """Each payload as a message and as a metadata key and value round-trips exactly."""
    for i, payload in enumerate(PAYLOADS):
        metadata = {payload: payload, "nested": {"list": [payload]}}
        body = {"message": payload, "session_id": f"inj-{i}", "metadata": metadata}
        response = target.call("POST", "/v1/runs", target.alice, json=body)
        assert response.status_code == 200, response.text
        target.runs += 1
        run = target.call("GET", f"/v1/runs/{response.json()['run_id']}", target.alice).json()
        assert run["metadata"] == metadata
        assert _user_messages(target, target.alice, f"inj-{i}") == [payload]


def test_payloads_as_ids_and_names_are_refused_or_not_found(target: Target) -> None:
    """As session id, run id, agent, webhook or user_id a payload is a 400/404 (or an empty answer), nothing more."""
    before = target.rows()
    for payload in PAYLOADS:
        as_session = target.call("POST", "/v1/runs", target.alice, json={"message": "hi", "session_id": payload})
        assert as_session.status_code == 400, as_session.text
        as_agent = target.call("POST", "/v1/runs", target.alice, json={"message": "hi", "agent": payload})
        assert as_agent.status_code == 404
        webhook = {"message": "hi", "background": True, "webhook_url": payload}
        assert target.call("POST", "/v1/runs", target.alice, json=webhook).status_code == 400
        segment = quote(payload, safe="")
        for method, path in [("GET", f"/v1/sessions/{segment}"), ("DELETE", f"/v1/sessions/{segment}")]:
            assert target.call(method, path, target.alice).status_code in {400, 404}
        assert target.call("GET", f"/v1/runs/{segment}", target.alice).status_code == 404
        usage = target.call("GET", "/v1/usage", target.admin, params={"user_id": payload})
        assert usage.status_code == 200 and usage.json()["today"]["spent_usd"] == 0
        assert target.call("GET", "/v1/usage", target.alice, params={"session_id": payload}).status_code in {200, 400}
    assert target.rows() == before


def test_a_user_named_with_a_payload_is_just_another_user(target: Target) -> None:
    """The key made for `robert');DROP…` works, owns its sessions, and sees nobody else's."""
    response = target.call("POST", "/v1/runs", target.evil, json={"message": "mine", "session_id": "keep-me"})
    assert response.status_code == 200
    target.runs += 1
    assert target.call("GET", "/v1/usage", target.evil).json()["user_id"] == EVIL_USER
    assert _user_messages(target, target.evil, "keep-me") == ["mine"]
    assert _user_messages(target, target.alice, "keep-me") == ["baseline"]
    assert target.call("GET", "/v1/sessions/inj-0", target.evil).status_code == 404


def test_afterwards_every_table_holds_exactly_what_the_accepted_requests_made(target: Target) -> None:
    """No table dropped or emptied, no row added or changed by a payload: counts match the accepted runs."""
    rows = target.rows()
    assert rows["agentkeep_runs"] == target.runs
    assert rows["agentkeep_api_keys"] == 3
    assert rows["agentkeep_schema_version"] >= 3
    assert rows["agentkeep_sessions"] == target.runs  # every accepted run was on a session of its own
    assert _user_messages(target, target.alice, "keep-me") == ["baseline"]
    assert target.call("GET", "/v1/usage", target.alice).status_code == 200
    assert not Path("/tmp/pwn.db").exists()
