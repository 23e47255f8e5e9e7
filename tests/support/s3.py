"""A real S3-compatible server on loopback for the object-storage workspace: moto's, in its own process.

`moto_server()` starts `ThreadedMotoServer` on a port the kernel picks; the child prints the port
once it listens (the readiness signal) and stops when its stdin closes, so it also dies with the
test process. AGENTKEEP_TEST_S3_ENDPOINT, when set, names a server to use instead (a MinIO, say).
Each test gets a bucket of its own (`fresh_bucket`) and the AWS_* variables pointing at it (`s3_env`).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

_SERVE = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


@contextmanager
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto server running until the block ends; skipped (failed under CI=true)
    when moto[server] is not installed."""
    given = os.environ.get("AGENTKEEP_TEST_S3_ENDPOINT")
    if given:
        yield given
        return
    try:
        import moto.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("moto[server] is not installed (required under CI=true; it is in the dev extra)")
        pytest.skip("moto[server] is not installed")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            pytest.fail(f"the moto server did not start (exit status {proc.poll()})")
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def fresh_bucket(endpoint: str) -> str:
    """A new, empty bucket on the server (moto accepts an unsigned create)."""
    bucket = f"ws-{secrets.token_hex(6)}"
    request = urllib.request.Request(f"{endpoint}/{bucket}", data=b"", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return bucket


def s3_env(endpoint: str, bucket: str, prefix: str = "workspace") -> dict[str, str]:
    """The variables a process needs to keep its workspace in `bucket` under `prefix`."""
    return {
        "AGENTKEEP_WORKSPACE_URL": f"s3://{bucket}/{prefix}",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-not-real",
        "AWS_REGION": "us-east-1",
    }
