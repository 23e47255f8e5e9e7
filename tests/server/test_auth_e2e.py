"""API keys end to end: keys made by the real CLI, a real server requiring them, users kept apart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkeep.testing.mock_llm import MockLLM
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.cli import create_key, run_cli
from tests.support.server import ServerProcess


@dataclass
class Keyed:
    server: ServerProcess
    database_url: str
    workdir: Path
    alice: str
    bob: str
    admin: str

    def as_(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def run(self, key: str, **body: Any) -> httpx.Response:
        return self.server.client.post("/v1/runs", json=body, headers=self.as_(key))

    def get(self, path: str, key: str | None, **params: str) -> httpx.Response:
        return self.server.client.get(path, headers=self.as_(key), params=params)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    """A loopback server with AGENTKEEP_AUTH=required and three keys from `agentkeep keys create`."""
    tmp = tmp_path_factory.mktemp("auth")
    url = f"sqlite:///{tmp / 'agentkeep.db'}"
    alice, bob = create_key(url, tmp, "alice"), create_key(url, tmp, "bob")
    admin = create_key(url, tmp, "ops", admin=True)
    with MockLLM() as mock:
        env = server_env(
            mock,
            url,
            AGENTKEEP_AUTH="required",
            AGENTKEEP_RATE_LIMIT="10000/minute",
            AGENTKEEP_READ_RATE_LIMIT="10000/minute",
        )
        with ServerProcess(MOCK_AGENT, tmp, env=env) as server:
            yield Keyed(server, url, tmp, alice, bob, admin)


def _is_401(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "unauthorized"
    assert set(response.json()) == {"error"} and set(response.json()["error"]) == {"type", "message"}
    assert response.headers["www-authenticate"].startswith("Bearer")
    message: str = response.json()["error"]["message"]
    return message


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ,",
        "Basic YWxpY2U6cGFzc3dvcmQ=",
        "Bearer not-a-key",
        "Bearer ak_000000000000_" + "A" * 43,
        "Token {alice}",
        "Bearer {alice}x",
        "Bearer {alice_wrong_secret}",
    ],
)
def test_a_v1_request_without_a_valid_key_gets_401_in_the_envelope(keyed: Keyed, header: str | None) -> None:
    """Missing, empty, other scheme, malformed, unknown id, wrong secret: 401 `unauthorized`, nothing run."""
    headers = {}
    if header is not None:
        wrong = keyed.alice[:-1] + ("A" if keyed.alice[-1] != "A" else "B")
        headers["Authorization"] = header.format(alice=keyed.alice, alice_wrong_secret=wrong)
    for method, path in [
        ("POST", "/v1/runs"),
        ("GET", "/v1/runs/run_x"),
        ("GET", "/v1/sessions/s"),
        ("DELETE", "/v1/sessions/s"),
        ("GET", "/v1/usage"),
        ("GET", "/v1/stats"),
    ]:
        response = keyed.server.client.request(method, path, headers=headers, json={"message": "hi"})
        message = _is_401(response)
        assert keyed.alice not in message


def test_unknown_and_revoked_keys_get_the_same_answer(keyed: Keyed) -> None:
    """A key revoked with the CLI stops working at once, answered exactly like a key that never existed."""
    key = create_key(keyed.database_url, keyed.workdir, "carol")
    assert keyed.get("/v1/usage", key).status_code == 200
    key_id = key.split("_")[1]
    revoked = run_cli("keys", "revoke", key_id, cwd=keyed.workdir, env={"AGENTKEEP_DATABASE_URL": keyed.database_url})
    assert revoked.returncode == 0, revoked.stderr
    unknown = keyed.get("/v1/usage", "ak_000000000000_" + "A" * 43)
    gone = keyed.get("/v1/usage", key)
    assert _is_401(gone) == _is_401(unknown)
    assert gone.json() == unknown.json()


def test_probes_metrics_and_the_schema_need_no_key(keyed: Keyed) -> None:
    """/health, /ready, /metrics and /openapi.json stay public; the schema declares the bearer scheme."""
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):
        assert keyed.get(path, None).status_code == 200, path
    schema = keyed.get("/openapi.json", None).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_a_keys_user_owns_its_sessions_and_runs(keyed: Keyed) -> None:
    """Alice's runs are hers: Bob reading, deleting or cancelling them gets the 404 of an id that does not exist."""
    first = keyed.run(keyed.alice, message="alice's secret plan", session_id="shared-name")
    assert first.status_code == 200, first.text
    run_id = first.json()["run_id"]
    assert keyed.get("/v1/sessions/shared-name", keyed.alice).status_code == 200
    assert keyed.get(f"/v1/runs/{run_id}", keyed.alice).json()["status"] == "succeeded"

    missing_run = "run_000000000000000000000000"
    for method, (name, path), (other, missing) in [
        ("GET", ("shared-name", "/v1/sessions/shared-name"), ("never-made", "/v1/sessions/never-made")),
        ("DELETE", ("shared-name", "/v1/sessions/shared-name"), ("never-made", "/v1/sessions/never-made")),
        ("GET", (run_id, f"/v1/runs/{run_id}"), (missing_run, f"/v1/runs/{missing_run}")),
        ("POST", (run_id, f"/v1/runs/{run_id}/cancel"), (missing_run, f"/v1/runs/{missing_run}/cancel")),
    ]:
        bob = keyed.as_(keyed.bob)
        theirs = keyed.server.client.request(method, path, headers=bob)
        nothing = keyed.server.client.request(method, missing, headers=bob)
        assert theirs.status_code == nothing.status_code == 404, (method, path)
        # Same body but for the id, same headers: nothing tells Bob the id exists for someone else.
        assert theirs.json() == json.loads(nothing.text.replace(other, name))
        assert theirs.json()["error"]["type"] == "not_found"
        assert set(theirs.headers) - {"date"} == set(nothing.headers) - {"date"}
    assert keyed.get(f"/v1/runs/{run_id}", keyed.alice).json()["status"] == "succeeded"  # the cancel did nothing

    # Bob may use the same session id: it is his own session, and Alice's stays as it was.
    assert keyed.run(keyed.bob, message="bob's message", session_id="shared-name").status_code == 200
    alices = keyed.get("/v1/sessions/shared-name", keyed.alice).json()["messages"]
    bobs = keyed.get("/v1/sessions/shared-name", keyed.bob).json()["messages"]
    assert [m["content"] for m in alices if m["role"] == "user"] == ["alice's secret plan"]
    assert [m["content"] for m in bobs if m["role"] == "user"] == ["bob's message"]
    assert "alice's secret plan" not in json.dumps(bobs)


def test_only_an_admin_key_reads_another_users_usage(keyed: Keyed) -> None:
    """`/v1/usage?user_id=` is refused for a normal key and answered for an admin key."""
    assert keyed.get("/v1/usage", keyed.bob).json()["user_id"] == "bob"
    refused = keyed.get("/v1/usage", keyed.bob, user_id="alice")
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "unauthorized"
    allowed = keyed.get("/v1/usage", keyed.admin, user_id="alice")
    assert allowed.status_code == 200 and allowed.json()["user_id"] == "alice"
    assert keyed.get("/v1/usage", keyed.admin).json()["user_id"] == "ops"


def test_keys_list_shows_every_key_and_when_it_was_last_used(keyed: Keyed) -> None:
    """`keys list --json` (real CLI) has id, user, admin, created, last used and revoked; no secret."""
    assert keyed.get("/v1/usage", keyed.admin).status_code == 200
    listing = run_cli("keys", "list", "--json", cwd=keyed.workdir, env={"AGENTKEEP_DATABASE_URL": keyed.database_url})
    assert listing.returncode == 0, listing.stderr
    rows = [json.loads(line) for line in listing.stdout.splitlines()]
    by_id = {row["id"]: row for row in rows}
    admin = by_id[keyed.admin.split("_")[1]]
    assert admin["user"] == "ops" and admin["admin"] is True and admin["revoked"] == "-"
    assert admin["last_used"] != "-" and admin["created"].endswith("Z")
    for key in (keyed.alice, keyed.bob, keyed.admin):
        assert key.split("_", 2)[2] not in listing.stdout
    table = run_cli("keys", "list", cwd=keyed.workdir, env={"AGENTKEEP_DATABASE_URL": keyed.database_url})
    assert table.stdout.splitlines()[0].split() == ["ID", "USER", "ADMIN", "CREATED", "LAST", "USED", "REVOKED"]
    assert len(table.stdout.splitlines()) == len(rows) + 1


def test_the_keys_commands_fail_in_one_line_with_the_contract_exit_codes(tmp_path: Path) -> None:
    """create prints only the key on stdout; bad input exits 2, an unknown id exits 1, each in one line."""
    env = {"AGENTKEEP_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}"}
    created = run_cli("keys", "create", "--user", "dana", cwd=tmp_path, env=env)
    assert created.returncode == 0 and created.stdout.count("\n") == 1 and created.stdout.startswith("ak_")
    assert "not shown again" in created.stderr
    for args, code in [
        (("keys", "create", "--user", "two words"), 2),
        (("keys", "create"), 2),
        (("keys", "revoke", "nope"), 1),
        (("keys", "explode"), 2),
    ]:
        result = run_cli(*args, cwd=tmp_path, env=env)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr
    one_line = run_cli("keys", "revoke", "nope", cwd=tmp_path, env=env).stderr
    assert one_line.count("\n") == 1 and one_line.startswith("agentkeep: error: no key")


def test_keys_create_names_its_database_and_warns_when_it_had_to_create_it(tmp_path: Path) -> None:
    """Run from a directory with no database, `keys create` makes ./data/agentkeep.db there: it says
    so, with the absolute path, so a key a server on another database would refuse is no surprise;
    the next key goes into the same file without the warning. stdout stays the key alone."""
    database = tmp_path / "data" / "agentkeep.db"
    first = run_cli("keys", "create", "--user", "erin", cwd=tmp_path)
    assert first.returncode == 0 and first.stdout.startswith("ak_") and first.stdout.count("\n") == 1
    assert f"in sqlite:///{database};" in first.stderr
    assert f"warning: {database} did not exist" in first.stderr and "AGENTKEEP_DATABASE_URL" in first.stderr
    second = run_cli("keys", "create", "--user", "erin", cwd=tmp_path)
    assert second.returncode == 0 and f"in sqlite:///{database};" in second.stderr
    assert "warning" not in second.stderr


def test_the_rate_limit_counts_each_key_on_its_own(tmp_path: Path, mock_llm: MockLLM) -> None:
    """With 3/minute, Alice's fourth request is 429 while Bob, and then a bad key, are counted apart."""
    url = f"sqlite:///{tmp_path / 'agentkeep.db'}"
    alice, bob = create_key(url, tmp_path, "alice"), create_key(url, tmp_path, "bob")
    env = server_env(mock_llm, url, AGENTKEEP_AUTH="required", AGENTKEEP_READ_RATE_LIMIT="3/minute")
    with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:

        def usage(key: str) -> int:
            return server.client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"}).status_code

        assert [usage(alice) for _ in range(4)] == [200, 200, 200, 429]
        assert [usage(bob) for _ in range(3)] == [200, 200, 200]
        assert usage("ak_000000000000_" + "A" * 43) == 401
        output = server.output()
    for key in (alice, bob):
        assert key not in output and key.split("_", 2)[2] not in output
