"""API keys: created once, stored as a hash, checked in constant time, revoked for good.

A key reads `ak_<id>_<secret>`: `id` is 12 hex characters, public (it names the key in
`agentkeep keys list`, in logs and in the rate limiter's view); `secret` is 32 random bytes in
URL-safe base64 and is shown once, when the key is created. Only SHA-256(secret) is stored: a
salt or a slow hash protects guessable passwords, and 256 random bits are not guessable, so a
plain hash is enough and keeps each check to microseconds. The hash is compared with
`hmac.compare_digest`, so the time a check takes says nothing about how much of a guess was right.

The table, `agentkeep_api_keys`, is migration 3 in `stores.schema`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import sqlalchemy as sa
import structlog

from agentkeep.errors import ConfigError
from agentkeep.stores.database import Database
from agentkeep.stores.schema import api_keys

__all__ = ["KEY_PREFIX", "KeyRecord", "KeyStore", "NewKey", "check_user_id", "open_key_store", "parse_key"]

log = structlog.get_logger("agentkeep.stores")

KEY_PREFIX = "ak_"
_ID_HEX = 6  # bytes: 12 hex characters, unique enough for a name (a collision only fails a create)
_SECRET_BYTES = 32
_KEY_RE = re.compile(r"ak_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_USER_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")
# `last_used_at` is a convenience for `keys list`: written at most this often per key, not per request.
_LAST_USED_EVERY_S = 60.0


@dataclass(frozen=True)
class KeyRecord:
    """A key as stored: everything but its secret."""

    key_id: str
    user_id: str
    admin: bool
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class NewKey:
    """A key just created: `token` is the only copy of the secret there will ever be."""

    record: KeyRecord
    token: str


def parse_key(token: str) -> tuple[str, str] | None:
    """`(id, secret)` of a well-formed key, else None."""
    match = _KEY_RE.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def check_user_id(user_id: str) -> str:
    """A user id is 1-128 characters without whitespace or control characters."""
    if not _USER_RE.fullmatch(user_id):
        raise ConfigError("--user must be 1-128 characters without spaces or control characters")
    return user_id


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# Compared against when the key id is unknown, so that path does the same work as a wrong secret.
_NO_KEY_DIGEST = _digest(secrets.token_urlsafe(_SECRET_BYTES))


class KeyStore:
    """The API keys in an open database (SQLite or PostgreSQL): a `SQLStore`'s, or a `Database` of its own."""

    def __init__(self, store: Database) -> None:
        self.store = store

    async def create(self, user_id: str, *, admin: bool = False) -> NewKey:
        """A new key for `user_id`; its token is returned here and never again."""
        check_user_id(user_id)
        key_id = secrets.token_hex(_ID_HEX)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        record = KeyRecord(key_id, user_id, admin, time.time(), None, None)
        async with self.store.writer() as conn:
            await conn.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    user_id=user_id,
                    admin=admin,
                    secret_sha256=_digest(secret),
                    created_at=record.created_at,
                )
            )
        return NewKey(record, f"{KEY_PREFIX}{key_id}_{secret}")

    async def list(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        async with self.store.reader() as conn:
            rows = await conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id))
            return [_record(row) for row in rows]

    async def count_active(self) -> int:
        """How many keys are not revoked."""
        async with self.store.reader() as conn:
            query = sa.select(sa.func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))
            return int((await conn.execute(query)).scalar_one())

    async def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoke a key (idempotent); the key as it is now, or None when there is no such key."""
        async with self.store.writer() as conn:
            await conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))).first()
        return None if row is None else _record(row)

    async def verify(self, token: str) -> KeyRecord | None:
        """The key `token` is, if it exists, its secret matches and it is not revoked; else None."""
        parsed = parse_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        async with self.store.reader() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))).first()
        stored = row.secret_sha256 if row is not None else _NO_KEY_DIGEST
        matches = hmac.compare_digest(stored, _digest(secret))
        if row is None or not matches or row.revoked_at is not None:
            return None
        record = _record(row)
        if record.last_used_at is None or time.time() - record.last_used_at >= _LAST_USED_EVERY_S:
            await self._touch(key_id)
        return record

    async def _touch(self, key_id: str) -> None:
        try:
            async with self.store.writer() as conn:
                await conn.execute(
                    api_keys.update().where(api_keys.c.key_id == key_id).values(last_used_at=time.time())
                )
        except sa.exc.SQLAlchemyError as exc:
            # Bookkeeping only: a busy database must not turn a valid key into a failed request.
            log.warning("api_key.touch_failed", key_id=key_id, exc_type=type(exc).__name__)


@asynccontextmanager
async def open_key_store(url: str) -> AsyncIterator[KeyStore]:
    """The keys of the database at `url` (migrated first), for the `agentkeep keys` commands."""
    database = Database(url)
    await database.open()
    try:
        yield KeyStore(database)
    finally:
        await database.close()


def _record(row: sa.Row[tuple[object, ...]]) -> KeyRecord:
    m = row._mapping
    return KeyRecord(
        key_id=m["key_id"],
        user_id=m["user_id"],
        admin=bool(m["admin"]),
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        revoked_at=m["revoked_at"],
    )
