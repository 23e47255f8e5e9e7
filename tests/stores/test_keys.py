"""The API key store, on SQLite and PostgreSQL: random keys, only a hash kept, revocation for good."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from agentkeep.errors import ConfigError
from agentkeep.observability.logs import REDACTED, Redactor
from agentkeep.stores.keys import KeyStore, parse_key
from agentkeep.stores.schema import api_keys
from agentkeep.stores.sql import SQLStore


@pytest.fixture
async def keys(database_url: str) -> AsyncIterator[KeyStore]:
    store = SQLStore(database_url)
    await store.open()
    try:
        yield KeyStore(store)
    finally:
        await store.close()


async def test_a_new_key_has_a_public_id_and_256_random_bits_and_verifies(keys: KeyStore) -> None:
    """`ak_<12 hex>_<43 base64url>`: the id names the stored record; the key verifies as its user."""
    new = await keys.create("alice")
    parsed = parse_key(new.token)
    assert parsed is not None
    key_id, secret = parsed
    assert key_id == new.record.key_id and len(key_id) == 12
    assert len(secret) == 43  # 32 bytes of secrets.token_urlsafe
    verified = await keys.verify(new.token)
    assert verified is not None and verified.user_id == "alice" and not verified.admin
    assert (await keys.create("root", admin=True)).record.admin


async def test_only_a_hash_of_the_secret_is_stored(keys: KeyStore) -> None:
    """No column of the keys table holds the secret, or the whole key."""
    new = await keys.create("alice")
    _, secret = parse_key(new.token) or ("", "")
    async with keys.store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(api_keys))).all()
    stored = repr(rows)
    assert secret not in stored and new.token not in stored
    row = next(r._mapping for r in rows if r._mapping["key_id"] == new.record.key_id)
    assert len(row["secret_sha256"]) == 64


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
        lambda t: "ak_000000000000_" + t.split("_", 2)[2],  # unknown id, right-looking secret
        lambda t: t + "x",  # too long
        lambda t: t.upper(),  # malformed id
        lambda t: "",
        lambda t: "Bearer " + t,
        lambda t: t.replace("ak_", "sk_"),
        lambda t: t + "' OR '1'='1",
    ],
)
async def test_anything_but_the_exact_key_is_refused(keys: KeyStore, mangle: object) -> None:
    """A near miss of any kind verifies as nobody."""
    new = await keys.create("alice")
    assert callable(mangle)
    assert await keys.verify(mangle(new.token)) is None


async def test_a_revoked_key_stops_working_at_once_and_stays_listed(keys: KeyStore) -> None:
    """Revocation is immediate (no cache), idempotent, and `list` still shows the key as revoked."""
    active = await keys.count_active()  # PostgreSQL keeps one database per module: count what this test adds
    new = await keys.create("alice")
    other = await keys.create("alice")
    assert await keys.count_active() == active + 2
    revoked = await keys.revoke(new.record.key_id)
    assert revoked is not None and revoked.revoked
    assert await keys.verify(new.token) is None
    assert await keys.verify(other.token) is not None
    assert (await keys.revoke(new.record.key_id)) == revoked  # the first revocation time stands
    assert await keys.revoke("000000000000") is None
    listed = {k.key_id: k for k in await keys.list()}
    assert listed[new.record.key_id].revoked and not listed[other.record.key_id].revoked
    assert await keys.count_active() == active + 1


async def test_using_a_key_records_when_it_was_last_used(keys: KeyStore) -> None:
    """`last_used_at` is empty for a new key and set by its first use."""
    new = await keys.create("alice")

    async def last_used() -> float | None:
        return next(k for k in await keys.list() if k.key_id == new.record.key_id).last_used_at

    assert await last_used() is None
    before = time.time()
    await keys.verify(new.token)
    used = await last_used()
    assert used is not None and used >= before - 1


@pytest.mark.parametrize("user", ["", "has space", "tab\there", "x" * 129, "nul\x00"])
async def test_a_user_id_with_whitespace_or_control_characters_is_refused(keys: KeyStore, user: str) -> None:
    """User ids are printable, 1-128 characters; anything else is a usage error and stores nothing."""
    count = len(await keys.list())
    with pytest.raises(ConfigError):
        await keys.create(user)
    assert len(await keys.list()) == count


async def test_the_log_redactor_removes_a_whole_key(keys: KeyStore) -> None:
    """The key format is one the log redaction recognises by shape, so a key never reaches a log."""
    new = await keys.create("alice")
    cleaned = Redactor().redact(f"request with key {new.token} failed")
    assert new.token not in cleaned and cleaned == f"request with key {REDACTED} failed"
