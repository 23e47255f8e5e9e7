"""Who is calling: the API key on every `/v1` request, and whether this server asks for one.

    AGENTKEEP_AUTH    bound to loopback     bound elsewhere (or in process, e.g. Lambda)
    required          keys                  keys (a warning at start while none exists)
    auto (default)    no keys               keys; refuses to start while none exists
    off               no keys               no keys, with a loud warning at start

With keys, `Authorization: Bearer ak_<id>_<secret>` names the caller's user, who owns the sessions
and runs they create; a missing, malformed, unknown or revoked key gets 401 `unauthorized`, the same
message for each but the first, so a caller learns nothing about which keys exist. Without keys
every caller is the one anonymous user. `/health`, `/ready`, `/metrics` and `/openapi.json` never
ask who is calling; a route asks by depending on `current_user` (in `server.routes`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import structlog
from fastapi import Request
from fastapi.security import HTTPBearer

from agentkeep.config import Settings
from agentkeep.errors import AgentkeepError, ConfigError, Unauthorized
from agentkeep.runtime import ANONYMOUS_USER
from agentkeep.stores import open_store
from agentkeep.stores.keys import KeyStore

__all__ = ["Authenticator", "auth_required", "authenticate", "bearer_scheme", "check_auth", "is_loopback"]

log = structlog.get_logger("agentkeep.server")

# Declares the scheme in OpenAPI (the docs' "Authorize" button); `authenticate` does the checking.
bearer_scheme = HTTPBearer(
    auto_error=False, description="An API key from `agentkeep keys create`, when the server requires keys."
)


class _KeyRefused(Unauthorized):
    """401 that tells the client which scheme to use (RFC 6750)."""

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": 'Bearer realm="agentkeep"'}


def is_loopback(host: str | None) -> bool:
    """Whether binding `host` serves this machine only. Any name but `localhost` counts as public."""
    if host is None:
        return False
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def auth_required(mode: str, host: str | None) -> bool:
    """Whether callers need a key, for AGENTKEEP_AUTH=`mode` on a server bound to `host` (None: in process)."""
    if mode == "required":
        return True
    if mode == "off":
        return False
    return not is_loopback(host)


async def check_auth(settings: Settings, host: str) -> bool:
    """Before binding `host`: whether keys are required; refuse (ConfigError) what would be unsafe."""
    required = auth_required(settings.auth, host)
    if settings.auth == "off" and not is_loopback(host):
        log.warning(
            "auth.disabled_on_public_address",
            host=host,
            warning="AGENTKEEP_AUTH=off: anyone who can reach this address can run agents and read every session",
        )
    if not required:
        return False
    try:
        active = await _active_keys(settings)
    except AgentkeepError:
        raise
    except Exception as exc:
        if settings.auth == "required":  # the count only decides a warning: the server starts regardless
            return True
        reason = _without_secrets(f"{type(exc).__name__}: {exc}", settings)
        raise AgentkeepError(f"cannot check for API keys: the database did not answer ({reason})") from None
    if active == 0:
        if settings.auth == "auto":
            raise ConfigError(
                f"binding {host} (not loopback) needs API keys and none exists: run `agentkeep keys create "
                "--user NAME` first, or set AGENTKEEP_AUTH=required (start anyway) or off (serve without keys)"
            )
        log.warning("auth.no_keys", hint="every /v1 request gets 401 until `agentkeep keys create --user NAME`")
    return True


async def _active_keys(settings: Settings) -> int:
    store = await open_store(settings.database_url.get_secret_value())
    try:
        return await KeyStore(store).count_active()
    finally:
        await store.close()


def _without_secrets(text: str, settings: Settings) -> str:
    first_line = text.splitlines()[0] if text else text
    for secret in settings.secret_values():
        first_line = first_line.replace(secret, "[REDACTED]")
    return first_line


class Authenticator:
    """Turns a request's bearer key into its user; `keys` is set once the database is open."""

    def __init__(self, required: bool) -> None:
        self.required = required
        self.keys: KeyStore | None = None

    async def user(self, request: Request) -> str:
        if not self.required:
            return ANONYMOUS_USER
        token = _bearer(request.headers.get("authorization"))
        if self.keys is None:
            raise RuntimeError("the key store is not open")
        record = await self.keys.verify(token)
        if record is None:
            raise _KeyRefused("unknown or revoked API key")
        request.state.key_id = record.key_id
        request.state.is_admin = record.admin
        return record.user_id


def _bearer(header: str | None) -> str:
    if not header:
        raise _KeyRefused("missing API key: send `Authorization: Bearer KEY` (keys come from `agentkeep keys create`)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _KeyRefused("the Authorization header must be `Bearer KEY`")
    return token.strip()


async def authenticate(request: Request) -> str:
    """The FastAPI dependency behind `current_user`: the caller's user id, or 401."""
    authenticator: Any = request.app.state.auth
    assert isinstance(authenticator, Authenticator)
    return await authenticator.user(request)
