"""Completion webhooks: a finished background run, POSTed to the `webhook_url` it was submitted with.

    body        the run as `GET /v1/runs/{id}` shows it, as JSON
    headers     X-Agentkeep-Signature: sha256=<hex HMAC-SHA256 of the body's bytes under
                AGENTKEEP_WEBHOOK_SECRET> (absent without a secret); X-Agentkeep-Run-Id
    delivery    a DBOS workflow of its own, started by the run's workflow once the outcome is
                recorded: its one step is retried on a network error or a non-2xx answer, after
                1, 2, 4, 8 and 16 s, and a crash resumes it like any run
    safety      the fetch tool's SSRF rules (`agentkeep.tools.fetch`): http(s) only, the ports of
                AGENTKEEP_FETCH_PORTS, no private, loopback, link-local or metadata address (checked
                on the URL at submission, and on every address it resolves to at each delivery, on
                the socket actually used), the allow and deny host lists; no redirect is followed.
                AGENTKEEP_WEBHOOK_ALLOW_NETWORKS opens chosen networks for an internal receiver.

A receiver verifies with the same secret::

    expected = "sha256=" + hmac.new(secret, request_body, hashlib.sha256).hexdigest()
    hmac.compare_digest(expected, request.headers["X-Agentkeep-Signature"])
"""

from __future__ import annotations

import hashlib
import hmac
import json
from ipaddress import ip_network
from typing import Any

import httpx
from ssrfguard import Policy, SSRFGuardError
from ssrfguard.httpx import AsyncClient

from agentkeep.config import Settings
from agentkeep.errors import ConfigError, InvalidRequest
from agentkeep.tools._config import comma_list
from agentkeep.tools.fetch import ADDRESS_TABLE, FetchPolicy

__all__ = ["RETRY", "WebhookFailed", "WebhookSender", "sign"]

SIGNATURE_HEADER = "X-Agentkeep-Signature"
# DBOS step retries: attempts and the first pause, doubling after each failure (1+2+4+8+16 s).
RETRY = {"max_attempts": 6, "interval_seconds": 1.0, "backoff_rate": 2.0}
_TIMEOUT_S = 10.0


class WebhookFailed(Exception):
    """One delivery attempt failed; the step is retried."""

    def __init__(self, message: str) -> None:  # one positional argument, so a checkpoint can unpickle it
        super().__init__(message)


def sign(secret: str, body: bytes) -> str:
    """The `X-Agentkeep-Signature` value of `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Checks webhook URLs against the SSRF rules and delivers signed bodies to them."""

    def __init__(self, settings: Settings) -> None:
        fetch = FetchPolicy.from_settings(settings)
        try:
            networks = tuple(ip_network(net, strict=False) for net in comma_list(settings.webhook_allow_networks))
        except ValueError as exc:
            raise ConfigError(f"AGENTKEEP_WEBHOOK_ALLOW_NETWORKS: {exc}") from None
        self.policy = Policy(
            denied_networks=ADDRESS_TABLE,
            allowed_networks=networks,
            allowed_ports=frozenset(fetch.ports),
            allowed_hosts=frozenset(fetch.allow_hosts),
            max_redirects=0,
        )
        self.deny_hosts = tuple(host.strip().lower().rstrip(".").removeprefix("*.") for host in fetch.deny_hosts)
        self.secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None

    def check(self, url: str) -> None:
        """Refuse, with `InvalidRequest`, a URL the rules forbid before any lookup."""
        try:
            target = self.policy.check_url(url)
        except SSRFGuardError as exc:
            raise InvalidRequest(f"webhook_url is not permitted: {' '.join(str(exc).split())}") from None
        host = str(target.host).lower().rstrip(".")
        if any(host == denied or host.endswith("." + denied) for denied in self.deny_hosts):
            raise InvalidRequest(f"webhook_url is not permitted: host {host!r} is on the deny list")

    async def deliver(self, url: str, run: dict[str, Any]) -> int:
        """POST `run` to `url`; return the HTTP status, or raise `WebhookFailed` for a retry."""
        self.check(url)
        body = json.dumps(run, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Agentkeep-Run-Id": str(run.get("run_id", ""))}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        try:
            async with AsyncClient(policy=self.policy, trust_env=False, timeout=_TIMEOUT_S) as client:
                response = await client.post(url, content=body, headers=headers)
        except SSRFGuardError as exc:  # the name now resolves somewhere forbidden: not worth a retry
            raise InvalidRequest(f"webhook_url is not permitted: {' '.join(str(exc).split())}") from None
        except httpx.HTTPError as exc:
            raise WebhookFailed(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
        if not 200 <= response.status_code < 300:
            raise WebhookFailed(f"the receiver answered HTTP {response.status_code}")
        return response.status_code
