"""`ObjectWorkspace`: the file tools on S3-compatible object storage (AGENTKEEP_WORKSPACE_URL=s3://bucket/prefix).

For a fleet or Lambda, where each process has only its own disk, the files live in a bucket: AWS
S3, Cloudflare R2, MinIO or anything else that speaks S3 (endpoint and credentials from the
standard `AWS_*` variables: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_REGION; on Lambda its role's). The semantics are the disk's:

    read     one GET; refused over AGENTKEEP_FILE_MAX_BYTES from the object's size, before its body is read
    write    the size checked first, then one PUT, never multipart: the object is the old one or the new one
    list     by key prefix and `/` delimiter (a folder exists while a file is in it)
    jail     `tools._keys.object_key`: every path becomes a key under the scope's prefix, or is refused

The client is obstore (Rust's `object_store`), measured fastest to import and per request and the
lightest on CPU; see docs/tools.md. It is called through its synchronous API only, which releases the
GIL: its async API can abort the interpreter at exit (a tokio thread calling back into Python during
finalisation). One store per bucket and process, shared by every thread.

An error from the store never reaches the model or the caller as the store wrote it: obstore's
message holds the request URL and the response body, where a signature error quotes the access key
id and the string signed. Each kind of failure becomes one fixed sentence, and the server log gets
the operation, the key and the HTTP status, not the message.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, NoReturn, Self

import obstore
import structlog
from obstore.exceptions import (
    AlreadyExistsError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from agentkeep.tools._errors import FileMissing, ToolFailure, ToolRefused
from agentkeep.tools._keys import object_key
from agentkeep.tools.workspace import MAX_ENTRIES, MAX_LISTED, BaseWorkspace, FileInfo, child, shown

if TYPE_CHECKING:
    from obstore import PutMode
    from obstore.store import ClientConfig, RetryConfig

__all__ = ["ObjectWorkspace", "parse_url"]

log = structlog.get_logger("agentkeep.tools")

_DELETE_BATCH = 1000  # DeleteObjects takes up to 1,000 keys
_STATUS = re.compile(r"status(?: code)?:? (\d{3})")
_UNREACHABLE = "the workspace storage is unreachable or failed; try again later"
_REFUSED = "the workspace storage refused access (credentials or bucket policy); see the server log"


def parse_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → `("bucket", "some/prefix")`."""
    if not url.startswith("s3://"):
        raise ValueError("the workspace URL must look like s3://bucket/prefix")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError("the workspace URL names no bucket")
    return bucket, "/".join(part for part in prefix.split("/") if part)


class ObjectWorkspace(BaseWorkspace):
    """The workspace under the key prefix of `url` (`s3://bucket/prefix`), narrowed to `folder`."""

    def __init__(self, url: str, *, max_bytes: int = 1_048_576, folder: str = "", store: S3Store | None = None):
        self.url = url
        self.bucket, self.prefix = parse_url(url)
        self.max_bytes = max_bytes
        self.folder = folder.strip("/")
        self.base = "/".join(part for part in (self.prefix, self.folder) if part)
        self._store = store if store is not None else shared_store(self.bucket, _endpoint())

    def scoped(self, folder: str) -> Self:
        return type(self)(self.url, max_bytes=self.max_bytes, folder=child(self.folder, folder), store=self._store)

    # --- the tools ---

    def read_bytes(self, path: str) -> bytes:
        return self.read_tagged(path)[0]

    def read_tagged(self, path: str) -> tuple[bytes, str | None]:
        """A file's bytes and its ETag (the version `write_if` compares against)."""
        key = object_key(self.base, path)
        with _store_errors("read", key, path):
            result = obstore.get(self._store, key)
            if result.meta["size"] > self.max_bytes:  # the body is left unread: the connection is dropped instead
                raise ToolRefused(f"{shown(path)} is larger than the {self.max_bytes}-byte read limit")
            return bytes(result.bytes()), result.meta["e_tag"]

    def write_text(self, path: str, content: str) -> int:
        data = content.encode("utf-8")
        if len(data) > self.max_bytes:
            raise ToolRefused(f"{len(data)} bytes is more than the {self.max_bytes}-byte write limit")
        key = object_key(self.base, path)
        with _store_errors("write", key, path):
            obstore.put(
                self._store, key, data, use_multipart=False, attributes={"Content-Type": "text/plain; charset=utf-8"}
            )
        return len(data)

    def write_if(self, path: str, data: bytes, e_tag: str | None) -> None:
        """Put `data` only if the object is still the version `e_tag`, or, for None, if there is
        none; else `ToolFailure` ("changed meanwhile") and the object is left as it is."""
        if len(data) > self.max_bytes:
            raise ToolRefused(f"{len(data)} bytes is more than the {self.max_bytes}-byte write limit")
        key = object_key(self.base, path)
        mode: PutMode = "create" if e_tag is None else {"e_tag": e_tag}
        with _store_errors("write", key, path):
            obstore.put(self._store, key, data, mode=mode, use_multipart=False)

    def list_dir(self, path: str = ".") -> list[str]:
        prefix = object_key(self.base, path, folder=True)
        with _store_errors("list", prefix, path):
            listing = obstore.list_with_delimiter(self._store, prefix or None)
        start = len(prefix) + 1 if prefix else 0
        folders = [f"{name[start:].rstrip('/')}/" for name in listing["common_prefixes"]]
        files = [f"{meta['path'][start:]} ({meta['size']} bytes)" for meta in listing["objects"]]
        entries = sorted(folders + files)
        if not entries and prefix != self.base:
            raise FileMissing(f"{shown(path)} does not exist")
        shown_entries = entries[:MAX_ENTRIES]
        if len(entries) > MAX_ENTRIES:
            shown_entries.append(f"… {len(entries) - MAX_ENTRIES} more entries not shown")
        return shown_entries

    # --- the files routes and the sweep ---

    def files(self, limit: int = MAX_LISTED) -> list[FileInfo]:
        found: list[FileInfo] = []
        start = len(self.base) + 1 if self.base else 0
        with _store_errors("list", self.base, "."):
            for chunk in obstore.list(self._store, self.base or None, chunk_size=1000):
                for meta in chunk:
                    found.append(FileInfo(meta["path"][start:], meta["size"], meta["last_modified"].timestamp()))
                    if len(found) >= limit:
                        return sorted(found, key=lambda entry: entry.path)
        return sorted(found, key=lambda entry: entry.path)

    def subfolders(self) -> list[str]:
        start = len(self.base) + 1 if self.base else 0
        with _store_errors("list", self.base, "."):
            listing = obstore.list_with_delimiter(self._store, self.base or None)
        return sorted(name[start:].rstrip("/") for name in listing["common_prefixes"])

    def remove(self) -> None:
        if not self.folder:
            raise ValueError("the workspace root itself is never removed")
        with _store_errors("delete", self.base, "."):
            keys = [meta["path"] for chunk in obstore.list(self._store, self.base, chunk_size=1000) for meta in chunk]
            for first in range(0, len(keys), _DELETE_BATCH):
                obstore.delete(self._store, keys[first : first + _DELETE_BATCH])


@functools.cache
def shared_store(bucket: str, endpoint: str | None) -> S3Store:
    """One client per bucket and endpoint in this process (each has its own connection pool)."""
    # Passing client options drops AWS_ALLOW_HTTP from the environment, so plain http is allowed
    # from the endpoint's scheme (MinIO or moto on a local port).
    options: ClientConfig = {
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
        "connect_timeout": "5s",
        "timeout": "30s",
    }
    # obstore's default is 10 retries within 180 s: far past what a tool call should wait.
    retries: RetryConfig = {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=10),
        "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2), "base": 2},
    }
    return S3Store(bucket, client_options=options, retry_config=retries)


def _endpoint() -> str | None:
    # The same variables obstore reads the endpoint from; read here only to allow plain http.
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
        if value := os.environ.get(name):
            return value
    return None


@contextlib.contextmanager
def _store_errors(operation: str, key: str, path: str) -> Iterator[None]:
    """Turn whatever the store raised into one fixed sentence; the store's own message is never shown."""
    try:
        yield
    except ToolFailure:
        raise
    except Exception as exc:  # every failure of the store gets a fixed sentence
        _fail(operation, key, path, exc)


def _fail(operation: str, key: str, path: str, exc: Exception) -> NoReturn:
    if isinstance(exc, FileNotFoundError | NotFoundError):
        raise FileMissing(f"{shown(path)} does not exist") from None
    status = _STATUS.search(str(exc))
    log.warning(
        "workspace.store_error",
        operation=operation,
        key=key,
        error=type(exc).__name__,
        http_status=int(status.group(1)) if status else None,
    )
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError):
        # S3 answers 403, not 404, for a missing key to a caller that may not list the bucket.
        if operation == "read":
            raise FileMissing(f"{shown(path)} does not exist or may not be read") from None
        raise ToolFailure(_REFUSED) from None
    if isinstance(exc, AlreadyExistsError | PreconditionError):
        raise ToolFailure(f"{shown(path)} changed meanwhile; read it again") from None
    raise ToolFailure(_UNREACHABLE) from None
