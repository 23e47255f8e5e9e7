"""The SSRF attack run, executed inside a private network namespace by test_fetch_ssrf.py.

`python -m tests.tools.netns_ssrf` must run as root under `unshare --net --mount`: it brings up
the namespace's loopback, puts "public" (globally routable) and internal addresses on it, bind
mounts a resolv.conf naming its own DNS server, starts that server and HTTP servers on ports 80,
8080 and 3128 (a proxy canary), then fetches every URL below with the real `fetch_url` and prints
one JSON report. The namespace has no other interface, so no packet can leave it.

Importing this module does nothing; the tables are shared with the test.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PUBLIC = "93.184.216.34"
PUBLIC2 = "93.184.216.35"
PUBLIC6 = "2606:2800:220:1::1"
INTERNAL = ("10.0.0.5", "172.16.0.5", "192.168.1.5", "100.64.0.5", "169.254.169.254")
INTERNAL6 = ("fd00:ec2::254", "fc00::5")
PUBLIC_ADDRESSES = frozenset({PUBLIC, PUBLIC2, PUBLIC6})

A, AAAA = 1, 28
ZONE: dict[str, dict[int, list[str]]] = {
    "localhost": {A: ["127.0.0.1"], AAAA: ["::1"]},  # as resolvers answer it (RFC 6761)
    "public.test": {A: [PUBLIC]},
    "public2.test": {A: [PUBLIC2]},
    "denied.test": {A: [PUBLIC]},
    "v6.test": {AAAA: [PUBLIC6]},
    "loop.test": {A: ["127.0.0.1"]},
    "internal.test": {A: ["10.0.0.5"]},
    "cgnat.test": {A: ["100.64.0.5"]},
    "meta.test": {A: ["169.254.169.254"]},
    "zero.test": {A: ["0.0.0.0"]},
    "v6loop.test": {AAAA: ["::1"]},
    "ula.test": {AAAA: ["fd00:ec2::254"]},
    "mapped.test": {AAAA: ["::ffff:127.0.0.1"]},
    "nat64.test": {AAAA: ["64:ff9b::a9fe:a9fe"]},
    "sixtofour.test": {AAAA: ["2002:a9fe:a9fe::1"]},
    "mixed.test": {A: [PUBLIC, "10.0.0.5"]},
}
REBIND = "rebind.test"  # first A answer public, every later one 127.0.0.1

# (case id, URL): every one must be refused, and no internal server may see a request.
REFUSED: list[tuple[str, str]] = [
    ("scheme-file", "file:///etc/passwd"),
    ("scheme-ftp", "ftp://public.test/"),
    ("scheme-gopher", "gopher://127.0.0.1:70/_x"),
    ("scheme-dict", "dict://public.test:11211/stat"),
    ("lo-dotted", "http://127.0.0.1/"),
    ("lo-port", "http://127.0.0.1:80/"),
    ("lo-short-1", "http://127.1/"),
    ("lo-short-2", "http://127.0.1/"),
    ("lo-decimal", "http://2130706433/"),
    ("lo-hex", "http://0x7f000001/"),
    ("lo-hex-dotted", "http://0x7f.0x0.0x0.0x1/"),
    ("lo-octal", "http://0177.0.0.1/"),
    ("lo-octal-long", "http://017700000001/"),
    ("lo-zero-padded", "http://127.000.000.001/"),
    ("lo-trailing-dot", "http://127.0.0.1./"),
    ("lo-userinfo", "http://user@127.0.0.1/"),
    ("lo-behind-public-userinfo", "http://public.test@127.0.0.1/"),
    ("lo-circled-digits", "http://\u2460\u2461\u2466.0.0.1/"),
    ("lo-mapped", "http://[::ffff:127.0.0.1]/"),
    ("lo-mapped-hex", "http://[::ffff:7f00:1]/"),
    ("lo-compatible", "http://[::127.0.0.1]/"),
    ("lo-nat64", "http://[64:ff9b::127.0.0.1]/"),
    ("lo-6to4", "http://[2002:7f00:1::]/"),
    ("lo-localhost", "http://localhost/"),
    ("lo-localhost-dot-upper", "http://LOCALHOST./"),
    ("lo-dns", "http://loop.test/"),
    ("lo-v6", "http://[::1]/"),
    ("lo-v6-dns", "http://v6loop.test/"),
    ("unspecified", "http://0.0.0.0/"),
    ("unspecified-short", "http://0/"),
    ("unspecified-v6", "http://[::]/"),
    ("this-network", "http://0.1.2.3/"),
    ("this-network-dns", "http://zero.test/"),
    ("private-10", "http://10.0.0.5/"),
    ("private-172", "http://172.16.0.5/"),
    ("private-192", "http://192.168.1.5/"),
    ("private-dns", "http://internal.test/"),
    ("cgnat", "http://100.64.0.5/"),
    ("cgnat-dns", "http://cgnat.test/"),
    ("metadata", "http://169.254.169.254/latest/meta-data/"),
    ("metadata-dns", "http://meta.test/latest/meta-data/"),
    ("metadata-v6", "http://[fd00:ec2::254]/"),
    ("metadata-v6-dns", "http://ula.test/"),
    ("link-local-v6", "http://[fe80::1]/"),
    ("unique-local", "http://[fc00::5]/"),
    ("multicast", "http://224.0.0.1/"),
    ("multicast-v6", "http://[ff02::1]/"),
    ("reserved", "http://240.0.0.1/"),
    ("not-global-unicast-v6", "http://[4000::1]/"),
    ("reserved-v6", "http://[80::1]/"),
    ("broadcast", "http://255.255.255.255/"),
    ("embedded-mapped-dns", "http://mapped.test/"),
    ("embedded-nat64-dns", "http://nat64.test/"),
    ("embedded-6to4-dns", "http://sixtofour.test/"),
    ("mixed-answers", "http://mixed.test/"),
    ("credentials", "http://user:pw@public.test/"),
    ("port-8080", "http://public.test:8080/"),
    ("port-22", "http://public.test:22/"),
    ("port-8443-https", "https://public.test:8443/"),
    ("redirect-metadata", "http://public.test/redirect?to=http://169.254.169.254/latest/meta-data/"),
    ("redirect-metadata-dns", "http://public.test/redirect?to=http://meta.test/latest/meta-data/"),
    ("redirect-loopback", "http://public.test/redirect?to=http://127.0.0.1/"),
    ("redirect-loopback-v6", "http://public.test/redirect?to=http://[::1]/"),
    ("redirect-file", "http://public.test/redirect?to=file:///etc/passwd"),
    ("redirect-port", "http://public.test/redirect?to=http://public.test:8080/"),
    ("redirect-denied", "http://public.test/redirect?to=http://denied.test/"),
    ("redirects-6", "http://public.test/chain/6"),
    ("deny-list", "http://denied.test/"),
    ("deny-list-subdomain", "http://api.denied.test/"),
]

# (case id, URL, expected body prefix): every one must be fetched from a public address.
FETCHED: list[tuple[str, str, str]] = [
    ("name", "http://public.test/", f"public:{PUBLIC}"),
    ("name-upper-trailing-dot", "http://PUBLIC.test./", f"public:{PUBLIC}"),
    ("literal-v4", f"http://{PUBLIC}/", f"public:{PUBLIC}"),
    ("literal-v6", f"http://[{PUBLIC6}]/", f"public:{PUBLIC6}"),
    ("name-v6", "http://v6.test/", f"public:{PUBLIC6}"),
    ("redirects-5", "http://public.test/chain/5", "chain-end"),
    ("redirect-cross-host", "http://public.test/redirect?to=http://public2.test/", f"public:{PUBLIC2}"),
    ("big-body", "http://public.test/big", "aaaa"),
    ("gzip-bomb", "http://public.test/gzip-bomb", "\x00\x00\x00\x00"),
]

ENV = {
    "AGENTKEEP_FETCH_DENY_HOSTS": "denied.test",
    "AGENTKEEP_FETCH_TIMEOUT_S": "10",
    # Proxy variables point at the canary on :3128; fetch_url must ignore them.
    "HTTP_PROXY": "http://127.0.0.1:3128",
    "HTTPS_PROXY": "http://127.0.0.1:3128",
    "ALL_PROXY": "http://127.0.0.1:3128",
    "http_proxy": "http://127.0.0.1:3128",
}

HITS: list[dict[str, Any]] = []
QUERIES: list[tuple[str, int]] = []
_rebind_lock = threading.Lock()


def _answer(query: bytes) -> bytes:
    """A DNS reply to one query, from ZONE (NXDOMAIN for unknown names)."""
    (txid,) = struct.unpack("!H", query[:2])
    offset, labels = 12, []
    while query[offset]:
        length = query[offset]
        labels.append(query[offset + 1 : offset + 1 + length].decode("ascii").lower())
        offset += 1 + length
    question = query[12 : offset + 5]
    qtype = struct.unpack("!H", query[offset + 1 : offset + 3])[0]
    name = ".".join(labels)
    QUERIES.append((name, qtype))
    if name == REBIND:
        with _rebind_lock:
            earlier = sum(1 for n, t in QUERIES[:-1] if n == REBIND and t == A)
        records = {A: [PUBLIC if earlier == 0 else "127.0.0.1"]}
    else:
        records = ZONE.get(name, {})
    rcode = 0 if name in ZONE or name == REBIND else 3
    answers = b""
    for value in records.get(qtype, []):
        family = socket.AF_INET if qtype == A else socket.AF_INET6
        rdata = socket.inet_pton(family, value)
        answers += struct.pack("!HHHIH", 0xC00C, qtype, 1, 0, len(rdata)) + rdata
    count = len(records.get(qtype, []))
    return struct.pack("!HHHHHH", txid, 0x8180 | rcode, 1, count, 0, 0) + question + answers


def _serve_dns(sock: socket.socket) -> None:
    while True:
        query, peer = sock.recvfrom(4096)
        sock.sendto(_answer(query), peer)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        local = self.connection.getsockname()[0].removeprefix("::ffff:")
        port = self.connection.getsockname()[1]
        HITS.append({"address": local, "port": port, "path": self.path})
        if local not in PUBLIC_ADDRESSES:
            return self._send(200, b"INTERNAL")
        if port == 3128:
            return self._send(200, b"PROXY")
        url = urlsplit(self.path)
        if url.path == "/redirect":
            return self._send(302, b"", location=parse_qs(url.query)["to"][0])
        if url.path.startswith("/chain/"):
            left = int(url.path.rsplit("/", 1)[1])
            return self._send(302, b"", location=f"/chain/{left - 1}") if left else self._send(200, b"chain-end")
        if url.path == "/big":
            return self._send(200, b"a" * (2 * 1_048_576))
        if url.path == "/gzip-bomb":
            return self._send(200, gzip.compress(b"\x00" * (16 * 1_048_576)), encoding="gzip")
        if url.path == "/drip":
            return self._drip()
        return self._send(200, (f"public:{local}" if port == 80 else f"public-{port}:{local}").encode())

    def _send(self, status: int, body: bytes, *, location: str | None = None, encoding: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if encoding is None else "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", location)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.end_headers()
        self.wfile.write(body)

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        for _ in range(100):
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.3)


class _DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _setup_network() -> list[str]:
    """Loopback up with every test address on it; returns the namespace's interfaces."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for address in (PUBLIC, PUBLIC2, *INTERNAL):
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    for address in (PUBLIC6, *INTERNAL6):
        subprocess.run(["ip", "-6", "addr", "add", f"{address}/128", "dev", "lo", "nodad"], check=True)
    conf = tempfile.NamedTemporaryFile("w", suffix=".resolv.conf", delete=False)  # noqa: SIM115
    conf.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    conf.close()
    subprocess.run(["mount", "--bind", conf.name, "/etc/resolv.conf"], check=True)
    os.unlink(conf.name)  # the bind mount keeps the file alive for this namespace only
    return [name for _, name in socket.if_nameindex()]


def _start_servers() -> None:
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 53))
    threading.Thread(target=_serve_dns, args=(dns,), daemon=True).start()
    for port in (80, 8080, 3128):
        server = _DualStackServer(("::", port), _Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()


async def _outcome(fetch: Any, url: str) -> dict[str, Any]:
    from agentkeep.tools import ToolFailure, ToolRefused

    started = time.monotonic()
    try:
        result = await fetch(url)
    except ToolRefused as exc:
        return {"kind": "refused", "message": exc.message, "seconds": time.monotonic() - started}
    except ToolFailure as exc:
        return {"kind": "failed", "message": exc.message, "seconds": time.monotonic() - started}
    return {
        "kind": "fetched",
        "status": result["status"],
        "body": result["content"][:40],
        "length": len(result["content"]),
        "truncated": result["truncated"],
        "url": result["url"],
        "seconds": time.monotonic() - started,
    }


async def _run_cases() -> dict[str, dict[str, Any]]:
    from agentkeep.tools import Fetcher, FetchPolicy, fetch_url

    cases: dict[str, dict[str, Any]] = {}
    cases["rebind-first"] = await _outcome(fetch_url, f"http://{REBIND}/")
    cases["rebind-second"] = await _outcome(fetch_url, f"http://{REBIND}/")
    for case, url in REFUSED:
        cases[case] = await _outcome(fetch_url, url)
    for case, url, _ in FETCHED:
        cases[case] = await _outcome(fetch_url, url)
    allow = Fetcher(FetchPolicy(allow_hosts=("public.test",))).fetch
    cases["allow-list-listed"] = await _outcome(allow, "http://public.test/")
    cases["allow-list-unlisted"] = await _outcome(allow, "http://public2.test/")
    cases["allow-list-redirect"] = await _outcome(allow, "http://public.test/redirect?to=http://public2.test/")
    wider = Fetcher(FetchPolicy(ports=(80, 8080))).fetch
    cases["configured-port"] = await _outcome(wider, "http://public.test:8080/")
    cases["slow-body"] = await _outcome(Fetcher(FetchPolicy(timeout_s=1.5)).fetch, "http://public.test/drip")
    return cases


def main() -> None:
    interfaces = _setup_network()
    _start_servers()
    os.environ.update(ENV)
    cases = asyncio.run(_run_cases())
    report = {"interfaces": interfaces, "cases": cases, "hits": HITS, "queries": QUERIES}
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
