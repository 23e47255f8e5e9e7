"""The object-storage workspace's own promises: its key jail, and errors that never carry what the
store said (URLs, signatures, access key ids) to the model, the caller or a checkpoint."""

from __future__ import annotations

import pickle
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import structlog

from agentkeep.tools import ToolFailure, ToolRefused
from agentkeep.tools._keys import object_key

pytest.importorskip("obstore")

from agentkeep.tools.objects import ObjectWorkspace

FAKE_KEY_ID = "AKIAFAKEKEYID7EXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI-fake-secret-never-shown"
SIGNED = "AWS4-HMAC-SHA256\n20260101T000000Z\nfake/string/to/sign"
# What S3 answers to a bad signature: it quotes the key id and the whole string signed.
DENIED_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code>'
    f"<AWSAccessKeyId>{FAKE_KEY_ID}</AWSAccessKeyId><StringToSign>{SIGNED}</StringToSign>"
    "<SignatureProvided>0123456789abcdef</SignatureProvided></Error>"
)
FIXED = {
    "the workspace storage refused access (credentials or bucket policy); see the server log",
    "the workspace storage is unreachable or failed; try again later",
    "'notes.md' does not exist or may not be read",
}


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("a.txt", "p/s/a.txt"),
        ("./a/./b.txt", "p/s/a/b.txt"),
        ("a//b.txt", "p/s/a/b.txt"),
        ("/workspace/a.txt", "p/s/a.txt"),
        ("100%.txt", "p/s/100%.txt"),
        ("é/ü.txt", "p/s/é/ü.txt"),
    ],
)
def test_an_ordinary_path_becomes_a_key_under_the_prefix(path: str, key: str) -> None:
    """Empty and `.` segments go, the bytes stay as given (no Unicode normalisation), and
    `/workspace/` is the folder itself."""
    assert object_key("p/s", path) == key


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../x", "outside"),
        ("a/../../x", "outside"),
        ("%2e%2e/x", "outside"),
        ("%252e%252e/x", "outside"),
        ("..%2fx", "outside"),
        ("a%2F..%2F..%2Fx", "outside"),
        ("/x", "outside"),
        ("/workspacex/a", "outside"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\u202ecod.exe", "bidirectional"),
        ("a\ud800", "surrogate"),
        ("", "folder"),
        ("a/", "folder"),
        ("a/.", "folder"),
        ("n" * 256, "255 bytes"),
        ("/".join(["d" * 200] * 6), "1024 bytes"),
    ],
)
def test_a_hostile_path_is_refused_as_a_key(path: str, reason: str) -> None:
    """`..` in any spelling, absolute paths, backslashes, control and bidi characters, a file
    path naming a folder (which would write the prefix object itself), and over-long names."""
    with pytest.raises(ToolRefused, match=reason):
        object_key("p/s", path)


def test_a_folder_key_may_be_the_folder_itself() -> None:
    """For a listing `.` is the scope's prefix, never a bare string that `p/s10` would also match."""
    assert object_key("p/s", ".", folder=True) == "p/s"
    assert object_key("p/s", "sub/", folder=True) == "p/s/sub"


class _Denying(BaseHTTPRequestHandler):
    def _deny(self) -> None:
        body = DENIED_BODY.encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _deny

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def denying(monkeypatch: pytest.MonkeyPatch) -> Iterator[ObjectWorkspace]:
    """A workspace on a server that answers every request 403 with S3's signature-error body."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Denying)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    yield ObjectWorkspace("s3://denied-bucket/ws", folder="sessions/a/b")
    server.shutdown()
    server.server_close()


def _failures(workspace: ObjectWorkspace) -> list[ToolFailure]:
    calls = [
        lambda: workspace.read_text("notes.md"),
        lambda: workspace.write_text("notes.md", "x"),
        lambda: workspace.list_dir("."),
        lambda: workspace.files(),
        lambda: workspace.remove(),
    ]
    failures = []
    for call in calls:
        with pytest.raises(ToolFailure) as caught:
            call()
        failures.append(caught.value)
    return failures


def _assert_clean(failure: ToolFailure, endpoint_hint: str) -> None:
    shown = [failure.message, str(failure), repr(failure), pickle.dumps(failure).decode("latin-1")]
    for text in shown:
        for secret in (FAKE_KEY_ID, FAKE_SECRET, "StringToSign", "SignatureProvided", endpoint_hint, "denied-bucket"):
            assert secret not in text, (secret, text)
    assert failure.__cause__ is None and failure.__suppress_context__


def test_a_refusing_store_gives_fixed_sentences_without_what_it_said(
    denying: ObjectWorkspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read, write, list and delete against a store answering 403 with a signature-error body: each
    is a fixed sentence; neither it, its repr, its pickle (a checkpoint) nor the log line holds the
    key id, the secret, the string signed, the endpoint or the bucket."""
    with structlog.testing.capture_logs() as logs:
        failures = _failures(denying)
    for failure in failures:
        assert failure.message in FIXED, failure.message
        _assert_clean(failure, "127.0.0.1")
    logged = repr(logs) + capsys.readouterr().err
    assert {entry["http_status"] for entry in logs} == {403}
    for secret in (FAKE_KEY_ID, FAKE_SECRET, "StringToSign"):
        assert secret not in logged


def test_an_unreachable_store_is_a_fixed_sentence_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens at the endpoint: the tools say the storage is unreachable, within the
    client's few retries, naming neither the address nor the bucket."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    workspace = ObjectWorkspace("s3://denied-bucket/ws", folder="sessions/a/b")
    with pytest.raises(ToolFailure) as caught:
        workspace.write_text("notes.md", "x")
    assert caught.value.message == "the workspace storage is unreachable or failed; try again later"
    _assert_clean(caught.value, str(port))
