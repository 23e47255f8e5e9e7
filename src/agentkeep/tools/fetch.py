"""`fetch_url`: an HTTP GET that untrusted text cannot steer at internal addresses.

The guard is the `ssrfguard` library, chosen over hand-written code because it meets every point
of the safety checklist (issue 7) and is built around the one that hand-written guards get wrong:
it resolves a name once, checks every answer, and connects to the address it checked, so a DNS
answer that changes between the check and the connection (rebinding) cannot redirect the socket.
Each redirect hop goes through the same seam and is counted against `max_redirects`.

What agentkeep adds on top:

- an address table stricter than ssrfguard's default: IPv6 outside 2000::/3 (the only block
  allocated for global unicast) is refused as well, so "not globally routable" holds for both
  families;
- a host deny list, checked on every hop before any lookup;
- proxy variables are ignored (`trust_env=False`): a proxy would do its own lookup;
- a wall-clock cap on the whole call (lookups, redirects, body) and a byte cap on the body, with
  compressed bodies inflated only up to the cap.

The tests in tests/tools/test_fetch_ssrf.py prove it inside a private network namespace.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import zlib
from dataclasses import dataclass
from ipaddress import ip_network

import certifi
import httpx
from ssrfguard import (
    DEFAULT_DENIED,
    AddressTable,
    Block,
    BlockedAddressError,
    BlockedURLError,
    Policy,
    Reach,
    Resolver,
    SSRFGuardError,
    resolve,
)
from ssrfguard.httpx import AsyncClient
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from agentkeep.config import Settings
from agentkeep.tools._config import comma_list, tool_settings
from agentkeep.tools._errors import ToolFailure, ToolRefused

__all__ = ["ADDRESS_TABLE", "FetchPolicy", "FetchResult", "Fetcher", "default_fetcher", "fetch_url"]

_OUTSIDE_GLOBAL_UNICAST = "outside 2000::/3, the only IPv6 block allocated for global unicast"

#: ssrfguard's table plus the IPv6 space outside 2000::/3. The more specific rows it already has
#: (loopback, the IPv4-embedding prefixes it decodes, ULA, link-local, multicast) keep deciding
#: their own ranges, because the table matches the longest prefix.
ADDRESS_TABLE = AddressTable(
    (
        *DEFAULT_DENIED.blocks,
        *(
            Block(network=ip_network(net), name="Not global unicast", rfc="RFC4291", reach=Reach.DENIED)
            for net in ("::/3", "4000::/2", "8000::/1")
        ),
    )
)

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml", "application/javascript")
_DISPLAY_URL_CHARS = 200


class FetchResult(TypedDict):
    """What `fetch_url` returns."""

    url: str
    status: int
    content_type: str
    content: str
    truncated: bool


@dataclass(frozen=True)
class FetchPolicy:
    """Where `Fetcher` may go and how much it may take."""

    allow_hosts: tuple[str, ...] = ()
    """When set, the only hosts that may be reached; `*.example.com` matches subdomains."""
    deny_hosts: tuple[str, ...] = ()
    """Hosts refused on every hop, each with all its subdomains."""
    ports: tuple[int, ...] = (80, 443)
    """Ports a URL may name."""
    max_bytes: int = 1_048_576
    """Body bytes kept (after decompression); the rest is cut and `truncated` set."""
    timeout_s: float = 10.0
    """Deadline of the whole call: lookups, every redirect, the body."""
    max_redirects: int = 5
    """Redirect hops followed; one more is refused."""
    user_agent: str = "agentkeep-fetch/1"
    """The User-Agent header sent with every request."""

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        """The policy the `AGENTKEEP_FETCH_*` settings describe."""
        return cls(
            allow_hosts=comma_list(settings.fetch_allow_hosts),
            deny_hosts=comma_list(settings.fetch_deny_hosts),
            ports=tuple(int(port) for port in comma_list(settings.fetch_ports)),
            max_bytes=settings.fetch_max_bytes,
            timeout_s=settings.fetch_timeout_s,
        )


class Fetcher:
    """Fetches URLs under a `FetchPolicy`. `resolver` replaces `socket.getaddrinfo` (tests)."""

    def __init__(self, policy: FetchPolicy | None = None, *, resolver: Resolver | None = None) -> None:
        self.policy = policy or FetchPolicy()
        self._guard = Policy(
            denied_networks=ADDRESS_TABLE,
            allowed_ports=frozenset(self.policy.ports),
            allowed_hosts=frozenset(self.policy.allow_hosts),
            max_redirects=self.policy.max_redirects,
        )
        self._denied = tuple(_normal_host(host.removeprefix("*.")) for host in self.policy.deny_hosts)
        self._resolver = resolver

    async def fetch(self, url: str) -> FetchResult:
        """GET `url`; raise `ToolRefused` for a forbidden target, `ToolFailure` when it fails."""
        shown = url if len(url) <= _DISPLAY_URL_CHARS else url[:_DISPLAY_URL_CHARS] + "…"
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                return await self._fetch(url)
        except SSRFGuardError as exc:
            raise ToolRefused(f"fetch_url refused {shown!r}: {_refusal(exc, url)}") from None
        except (httpx.TooManyRedirects, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ToolRefused(f"fetch_url refused {shown!r}: {_one_line(exc)}") from None
        except TimeoutError:
            raise ToolFailure(f"fetching {shown!r} took longer than {self.policy.timeout_s:g} s") from None
        except (httpx.HTTPError, httpx.StreamError) as exc:
            raise ToolFailure(f"fetching {shown!r} failed: {type(exc).__name__}: {_one_line(exc)}") from None

    async def refusal(self, url: str) -> str | None:
        """Why `fetch` would refuse `url` before sending anything, or None: the same checks (scheme,
        port, host lists, every address the name resolves to), for a URL someone else will fetch
        (an image a run is given). The name is resolved once more when it is fetched."""
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                target = self._guard.check_url(url)
                if self._is_denied(target.host):
                    return f"host {_normal_host(target.host)!r} is on the deny list"
                await asyncio.to_thread(resolve, target, policy=self._guard, resolver=self._resolver)
        except SSRFGuardError as exc:
            return _refusal(exc, url)
        except TimeoutError:
            return f"its host did not resolve within {self.policy.timeout_s:g} s"
        except OSError:  # socket.gaierror: a name that does not exist
            return "its host does not resolve"
        return None

    async def _fetch(self, url: str) -> FetchResult:
        async with (
            AsyncClient(
                policy=self._guard,
                resolver=self._resolver,
                trust_env=False,
                verify=_tls_context(),
                follow_redirects=True,
                timeout=httpx.Timeout(self.policy.timeout_s),
                headers={"User-Agent": self.policy.user_agent, "Accept-Encoding": "gzip, deflate"},
                event_hooks={"request": [self._check_deny_list]},
            ) as client,
            client.stream("GET", url) as response,
        ):
            body, truncated = await _read_capped(response, self.policy.max_bytes)
            content_type = response.headers.get("content-type", "")
            return FetchResult(
                url=str(response.url),
                status=response.status_code,
                content_type=content_type,
                content=_as_text(body, content_type, response.charset_encoding),
                truncated=truncated,
            )

    async def _check_deny_list(self, request: httpx.Request) -> None:
        """Runs before every hop, redirects included, and before any lookup."""
        host = _normal_host(request.url.raw_host.decode("ascii", "replace"))
        if self._is_denied(host):
            raise ToolRefused(f"fetch_url refused {str(request.url)!r}: host {host!r} is on the deny list")

    def _is_denied(self, host: str) -> bool:
        host = _normal_host(host)
        return any(host == denied or host.endswith("." + denied) for denied in self._denied)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Building one loads the CA bundle (tens of milliseconds); one shared context is safe to reuse.
    return ssl.create_default_context(cafile=certifi.where())


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The body, inflated at most to `limit` bytes, so a compression bomb costs nothing."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    elif encoding in ("", "identity"):
        inflater = None
    else:
        raise ToolFailure(f"the response uses content-encoding {encoding!r}, which fetch_url does not decode")
    body = bytearray()
    async for chunk in response.aiter_raw():
        room = limit - len(body)
        if inflater is None:
            data, more = chunk[: room + 1], len(chunk) > room
        else:
            try:
                data = inflater.decompress(chunk, room + 1)
            except zlib.error as exc:
                raise ToolFailure(f"the response body is not valid {encoding}: {exc}") from None
            more = bool(inflater.unconsumed_tail) or len(data) > room
        body += data[:room]
        if more:
            return bytes(body), True
    return bytes(body), False


def _as_text(body: bytes, content_type: str, charset: str | None) -> str:
    if body and not content_type.lower().startswith(_TEXT_TYPES) and b"\x00" in body[:1024]:
        return f"<{len(body)} bytes of binary content ({content_type or 'no content type'}), not shown>"
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _normal_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _refusal(exc: SSRFGuardError, url: str) -> str:
    """ssrfguard's reason, naming the redirect target or the address when that is what was refused."""
    if isinstance(exc, BlockedAddressError):
        return f"{exc.address} is not permitted: {_one_line(exc.reason)}"
    if isinstance(exc, BlockedURLError) and exc.url != url:
        return f"{exc.url!r} is not permitted: {_one_line(exc.reason)}"
    if isinstance(exc, BlockedURLError):
        return _one_line(exc.reason)
    return _one_line(exc)


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def default_fetcher() -> Fetcher:
    """A `Fetcher` configured from the process's settings."""
    return Fetcher(FetchPolicy.from_settings(tool_settings()))


async def fetch_url(url: str) -> FetchResult:
    """Fetch a public web page or HTTP API with GET and return its text.

    Only public internet hosts can be reached: URLs that name or resolve to loopback, private,
    link-local, cloud-metadata or other internal addresses are refused, and so are redirects to
    them. Only http and https on the allowed ports (80 and 443 by default) work. At most 5
    redirects are followed, the body is cut at 1 MB (`truncated` is then true) and the whole call
    must finish within 10 seconds.

    Args:
        url: The absolute http:// or https:// URL to fetch.

    Returns:
        The final URL after redirects, the HTTP status, the content type, the body as text and
        whether it was truncated.
    """
    return await default_fetcher().fetch(url)
