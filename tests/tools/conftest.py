"""Fixtures for the tool tests: a workspace tree with attacks planted in it, settings reset."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentkeep.tools import Workspace, _config
from agentkeep.tools._beneath import kernel_has_openat2

SECRET = "SECRET-OUTSIDE-THE-WORKSPACE"


@dataclass
class Tree:
    """The planted tree: `root` is the workspace; `outside` and `sibling` must stay unreachable."""

    root: Path
    outside: Path
    sibling: Path


@pytest.fixture(params=["openat2", "fallback"])
def workspace(request: pytest.FixtureRequest, tree: Tree) -> Workspace:
    """The workspace over `tree`, resolving with openat2 and then with the realpath fallback."""
    if request.param == "openat2":
        if not kernel_has_openat2():
            pytest.skip("this kernel has no openat2")
        return Workspace(tree.root, max_bytes=1_048_576, use_openat2=True)
    return Workspace(tree.root, max_bytes=1_048_576, use_openat2=False)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    """tmp/data (the workspace), tmp/data2 (a sibling), tmp/outside, with links between them."""
    root, sibling, outside = tmp_path / "data", tmp_path / "data2", tmp_path / "outside"
    for directory in (root / "sub", sibling, outside):
        directory.mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (sibling / "secret.txt").write_text(SECRET)
    (root / "notes.txt").write_text("hello")
    (root / "sub" / "inner.txt").write_text("inner")
    (root / "big.bin").write_bytes(b"b" * (2 * 1_048_576))
    (root / "link_out").symlink_to(outside)
    (root / "rel_out").symlink_to("../outside")
    (root / "sub" / "up_out").symlink_to("../../outside/secret.txt")
    (root / "passwd_link").symlink_to("/etc/passwd")
    (root / "chain1").symlink_to("chain2")
    (root / "chain2").symlink_to("/etc")
    (root / "proc_link").symlink_to("/proc/self/root")
    (root / "ok_link").symlink_to("notes.txt")
    os.link(outside / "secret.txt", root / "hard")
    os.mkfifo(root / "fifo")
    if os.geteuid() == 0:
        os.mknod(root / "null_dev", 0o600 | 0o020000, os.makedev(1, 3))
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock"))
    yield Tree(root=root, outside=outside, sibling=sibling)
    server.close()


@pytest.fixture
def tool_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set AGENTKEEP_* variables for the public tool functions; their cached settings are reset."""
    _config.reset()
    yield monkeypatch
    _config.reset()
