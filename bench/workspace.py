"""The workspace on object storage against local disk: is S3 within 2x the disk's time plus one round trip?

    python bench/workspace.py [--rounds 150] [--endpoint http://127.0.0.1:9000]

Without --endpoint it starts a moto server on loopback (moto[server], the dev extra), as the tests do.
Each round, on a worker thread as a sync tool runs, and interleaved so both see the same machine load:

    disk     write_file + read_file of a 100 KB file in a session folder of a local workspace
    s3       the same on the S3 workspace (one PUT, one GET, each through the key jail)
    rtt      a 1-byte PUT + GET on the same client: the requests' fixed cost ("one round trip")
    head     one HEAD, the smallest exchange there is, for the stricter reading of the goal

Both workspaces are built the way the tools build them for each call (`workspace_of`), so the
figures include that. The goal reads "one round trip" as the write+read pair with a 1-byte body:
a write and a read are two requests on any store, so the fixed cost of that pair is what S3 adds
whatever the size; the HEAD figure is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

_SERVE = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""
TEXT = "x" * (100 * 1024)


def _moto() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its request log
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        sys.exit("bench/workspace.py: the moto server did not start (pip install 'moto[server]')")
    return proc, f"http://127.0.0.1:{int(line)}"


async def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    await asyncio.to_thread(work)
    return time.perf_counter() - started


async def _measure(endpoint: str, rounds: int, local: Path) -> dict[str, list[float]]:
    bucket = f"bench-{secrets.token_hex(4)}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", data=b"", method="PUT"), timeout=10).read()
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1"
    )
    import obstore

    from agentkeep.config import Settings
    from agentkeep.tools.files import workspace_of
    from agentkeep.tools.objects import shared_store

    on_disk = Settings(workspace_dir=local, workspace_url=None)
    on_s3 = Settings(workspace_url=f"s3://{bucket}/bench")
    store = shared_store(bucket, endpoint)

    def disk() -> None:
        workspace = workspace_of("bench-user", "bench-session", on_disk)
        workspace.write_text("report.md", TEXT)
        assert workspace.read_text("report.md") == TEXT

    def s3() -> None:
        workspace = workspace_of("bench-user", "bench-session", on_s3)
        workspace.write_text("report.md", TEXT)
        assert workspace.read_text("report.md") == TEXT

    def rtt() -> None:
        obstore.put(store, "bench/tiny", b"x", use_multipart=False)
        assert bytes(obstore.get(store, "bench/tiny").bytes()) == b"x"

    def head() -> None:
        obstore.head(store, "bench/tiny")

    cases = {"disk": disk, "s3": s3, "rtt": rtt, "head": head}
    for work in cases.values():  # warm up: connections, the first directory creation
        await _timed(work)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, work in cases.items():
            samples[name].append(await _timed(work))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--endpoint", help="an S3-compatible server to use instead of a fresh moto")
    args = parser.parse_args()
    proc, endpoint = (None, args.endpoint) if args.endpoint else _moto()
    local = Path(tempfile.mkdtemp(prefix="bench-workspace-"))
    try:
        samples = asyncio.run(_measure(endpoint, args.rounds, local))
    finally:
        shutil.rmtree(local, ignore_errors=True)
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
            proc.wait(10)
    median = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    budget = 2 * median["disk"] + median["rtt"]
    strict = 2 * median["disk"] + median["head"]
    print(f"100 KB write_file + read_file, medians of {args.rounds} interleaved rounds")
    print(f"  local disk            {median['disk']:7.2f} ms")
    print(f"  S3 workspace          {median['s3']:7.2f} ms   ({'a local moto server' if proc else endpoint})")
    print(f"  1-byte PUT + GET      {median['rtt']:7.2f} ms   (one round trip: the pair's fixed cost)")
    print(f"  HEAD                  {median['head']:7.2f} ms")
    print(f"goal: S3 <= 2 x disk + round trip = {budget:.2f} ms: {'met' if median['s3'] <= budget else 'NOT met'}")
    print(f"      (with a HEAD as the round trip: {strict:.2f} ms: {'met' if median['s3'] <= strict else 'not met'})")


if __name__ == "__main__":
    main()
