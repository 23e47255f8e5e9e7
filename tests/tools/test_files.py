"""The file tools stay inside the workspace: attack paths are refused, ordinary use works.

Every test runs twice, resolving with openat2 and with the realpath + commonpath fallback.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from agentkeep.tools import ToolFailure, ToolRefused, Workspace, list_files, read_file, write_file
from tests.tools.conftest import SECRET, Tree

READ_ATTACKS = [
    "../outside/secret.txt",
    "sub/../../outside/secret.txt",
    "sub/./../../data2/secret.txt",
    "../data2/secret.txt",
    "/etc/passwd",
    "/proc/self/root/etc/passwd",
    "link_out/secret.txt",
    "rel_out/secret.txt",
    "sub/up_out",
    "passwd_link",
    "chain1/passwd",
    "proc_link/etc/passwd",
    "hard",
    "fifo",
    "sock",
    "notes.txt\x00.png",
    "sub",
    "big.bin",
]


def _absolute(tree: Tree, name: str) -> str:
    return {"outside": str(tree.outside / "secret.txt"), "sibling": str(tree.sibling / "secret.txt")}[name]


@pytest.mark.parametrize("path", READ_ATTACKS)
def test_read_attack_is_refused(workspace: Workspace, path: str) -> None:
    """`..`, absolute, symlinks out, magic links, hard links, FIFOs, sockets, NUL, dirs, size: refused."""
    with pytest.raises(ToolRefused):
        workspace.read_text(path)


@pytest.mark.parametrize("name", ["outside", "sibling"])
def test_absolute_path_outside_is_refused_including_the_prefix_sibling(
    workspace: Workspace, tree: Tree, name: str
) -> None:
    """/…/data2/secret.txt shares the text prefix of /…/data but is outside it (the startswith bug)."""
    with pytest.raises(ToolRefused, match="outside the workspace"):
        workspace.read_text(_absolute(tree, name))


def test_device_is_refused(workspace: Workspace, tree: Tree) -> None:
    """A character device in the workspace (made by root) is not read."""
    if not (tree.root / "null_dev").exists():
        pytest.skip("making a device node needs root")
    with pytest.raises(ToolRefused, match="character device"):
        workspace.read_text("null_dev")


def test_fifo_does_not_block(workspace: Workspace) -> None:
    """Opening a FIFO with no writer returns at once (O_NONBLOCK) and is refused, not hung on."""
    with pytest.raises(ToolRefused, match="FIFO"):
        workspace.read_text("fifo")


def test_hard_link_is_refused_with_the_reason(workspace: Workspace) -> None:
    """A file with st_nlink > 1 may be a second name for a file outside; the message says so."""
    with pytest.raises(ToolRefused, match="2 hard links"):
        workspace.read_text("hard")


@pytest.mark.parametrize(
    "path",
    ["../escape.txt", "sub/../../escape.txt", "link_out/new.txt", "rel_out/new.txt", "new\x00.txt", "/tmp/escape.txt"],
)
def test_write_attack_is_refused_and_nothing_lands_outside(workspace: Workspace, tree: Tree, path: str) -> None:
    """Writes that would land outside are refused and create no file there."""
    before = sorted(p.name for p in tree.root.parent.rglob("*") if not p.is_relative_to(tree.root))
    with pytest.raises(ToolRefused):
        workspace.write_text(path, "pwned")
    after = sorted(p.name for p in tree.root.parent.rglob("*") if not p.is_relative_to(tree.root))
    assert after == before


def test_write_to_the_sibling_by_absolute_path_is_refused(workspace: Workspace, tree: Tree) -> None:
    """The /data vs /data2 sibling cannot be written by absolute path either."""
    with pytest.raises(ToolRefused):
        workspace.write_text(str(tree.sibling / "new.txt"), "pwned")
    assert not (tree.sibling / "new.txt").exists()


@pytest.mark.parametrize("link", ["passwd_link", "hard", "ok_link"])
def test_writing_over_a_link_replaces_the_link_not_its_target(workspace: Workspace, tree: Tree, link: str) -> None:
    """A symlink or hard link at the target is replaced by the new file; what it pointed at is untouched."""
    targets = [Path("/etc/passwd"), tree.outside / "secret.txt", tree.root / "notes.txt"]
    digests = [hashlib.sha256(target.read_bytes()).hexdigest() for target in targets]
    workspace.write_text(link, "replaced")
    assert [hashlib.sha256(target.read_bytes()).hexdigest() for target in targets] == digests
    assert not (tree.root / link).is_symlink()
    assert (tree.root / link).read_text() == "replaced"


@pytest.mark.parametrize("path", ["..", "link_out", "/", "rel_out", "proc_link"])
def test_list_attack_is_refused(workspace: Workspace, path: str) -> None:
    """Listing a directory outside, directly or through a link, is refused."""
    with pytest.raises(ToolRefused):
        workspace.list_dir(path)


@pytest.mark.parametrize("path", ["notes.txt", "./notes.txt", "sub/../notes.txt", "ok_link"])
def test_ordinary_reads_work(workspace: Workspace, path: str) -> None:
    """Relative paths, `..` that stays inside and symlinks that stay inside are fine."""
    assert workspace.read_text(path) == "hello"


def test_absolute_path_inside_the_workspace_works(workspace: Workspace, tree: Tree) -> None:
    """An absolute path that names a file under the root is read like its relative form."""
    assert workspace.read_text(str(tree.root / "sub" / "inner.txt")) == "inner"


def test_write_creates_directories_and_reads_back(workspace: Workspace, tree: Tree) -> None:
    """Missing parents are created; the content round-trips; no temporary file is left behind."""
    assert workspace.write_text("reports/2024/summary.md", "# done\n") == 7
    assert workspace.read_text("reports/2024/summary.md") == "# done\n"
    assert sorted(os.listdir(tree.root / "reports" / "2024")) == ["summary.md"]


def test_missing_file_is_a_failure_not_a_refusal(workspace: Workspace) -> None:
    """A path that simply does not exist says so (a ToolFailure the model can act on)."""
    with pytest.raises(ToolFailure, match="does not exist") as caught:
        workspace.read_text("nope.txt")
    assert not isinstance(caught.value, ToolRefused)


def test_size_caps_on_read_and_write(tree: Tree) -> None:
    """Reads and writes over the cap are refused; at the cap they work."""
    small = Workspace(tree.root, max_bytes=10)
    small.write_text("ten.txt", "x" * 10)
    assert small.read_text("ten.txt") == "x" * 10
    with pytest.raises(ToolRefused, match="write limit"):
        small.write_text("eleven.txt", "x" * 11)
    with pytest.raises(ToolRefused, match="read limit"):
        small.read_text("big.bin")
    assert not (tree.root / "eleven.txt").exists()


def test_writing_over_a_directory_fails_and_leaves_no_temp_file(workspace: Workspace, tree: Tree) -> None:
    """A directory at the target is not replaced, and the temporary file is cleaned up."""
    with pytest.raises(ToolFailure, match="is a directory"):
        workspace.write_text("sub", "x")
    assert [name for name in os.listdir(tree.root) if name.endswith(".tmp")] == []


def test_list_shows_kinds_and_sizes(workspace: Workspace) -> None:
    """Directories end in `/`, files carry their size, links are described, not followed."""
    entries = workspace.list_dir(".")
    assert "sub/" in entries
    assert "notes.txt (5 bytes)" in entries
    assert "link_out (a symbolic link)" in entries
    assert workspace.list_dir("sub") == ["inner.txt (5 bytes)", "up_out (a symbolic link)"]


def test_readers_never_see_a_half_written_file(workspace: Workspace, tree: Tree) -> None:
    """Writes are atomic: a reader racing 200 rewrites only ever sees one whole version."""
    versions = {"a" * 300_000, "b" * 300_000}
    workspace.write_text("atomic.txt", "a" * 300_000)
    seen: set[str] = set()
    stop = threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            seen.add(workspace.read_text("atomic.txt"))

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        for i in range(200):
            workspace.write_text("atomic.txt", ("a" if i % 2 else "b") * 300_000)
    finally:
        stop.set()
        reader.join()
    assert seen <= versions
    assert seen


def test_public_functions_use_the_configured_workspace(tool_env: pytest.MonkeyPatch, tree: Tree) -> None:
    """read_file / write_file / list_files act on AGENTKEEP_WORKSPACE_DIR and refuse escapes."""
    tool_env.setenv("AGENTKEEP_WORKSPACE_DIR", str(tree.root))
    assert write_file("out/hello.txt", "hi there") == "wrote 8 bytes to out/hello.txt"
    assert read_file("out/hello.txt") == "hi there"
    assert list_files("out") == ["hello.txt (8 bytes)"]
    with pytest.raises(ToolRefused):
        read_file("../outside/secret.txt")


def test_secret_never_comes_back(workspace: Workspace, tree: Tree) -> None:
    """Across every attack path, no call returns the outside file's content."""
    leaked = []
    for path in [*READ_ATTACKS, _absolute(tree, "outside"), _absolute(tree, "sibling")]:
        try:
            text = workspace.read_text(path)
        except ToolFailure:
            continue
        if SECRET in text:
            leaked.append(path)
    assert leaked == []
