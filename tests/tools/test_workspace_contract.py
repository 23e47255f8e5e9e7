"""One contract for every workspace backend: the local disk and object storage (a real moto server)
answer the same calls the same way, and neither lets a path out of its scope's folder."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkeep.tools import BaseWorkspace, FileMissing, ToolFailure, ToolRefused, Workspace
from agentkeep.tools.scope import scope_folder
from tests.support.s3 import fresh_bucket, s3_env

ALICE = scope_folder("session", "alice", "s1")
BOB = scope_folder("session", "bob", "s1")
MIB = 1_048_576
# Each must be refused, or land inside the writer's own folder: never anywhere else.
HOSTILE = [
    "../escape.txt",
    "../../escape.txt",
    "a/../../escape.txt",
    "%2e%2e/escape.txt",
    "%252e%252e/escape.txt",
    "..%2fescape.txt",
    "a%2F..%2F..%2Fescape.txt",
    "/escape.txt",
    "/etc/escape.txt",
    "/workspace/../escape.txt",
    "a\\..\\..\\escape.txt",
    "sub/\x00escape.txt",
    "",
    ".",
    "..",
    "sub/",
]


@pytest.fixture(params=["disk", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BaseWorkspace]:
    """The whole workspace on one backend: a directory, or a fresh bucket's `ws` prefix."""
    if request.param == "disk":
        yield Workspace(tmp_path / "workspace", max_bytes=MIB)
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    env = s3_env(endpoint, fresh_bucket(endpoint), prefix="ws")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from agentkeep.tools.objects import ObjectWorkspace

    yield ObjectWorkspace(env["AGENTKEEP_WORKSPACE_URL"], max_bytes=MIB)


def test_a_file_reads_back_as_written_and_lists_with_its_size(root: BaseWorkspace) -> None:
    """Text round-trips (UTF-8 included); folders list with `/`, files with their size, sorted."""
    alice = root.scoped(ALICE)
    assert alice.write_text("notes/día.md", "héllo") == 6
    assert alice.write_text("a.txt", "") == 0
    assert alice.read_text("notes/día.md") == "héllo"
    assert alice.read_text("/workspace/notes/día.md") == "héllo"  # where run_python sees the folder
    assert alice.list_dir(".") == ["a.txt (0 bytes)", "notes/"]
    assert alice.list_dir("notes") == ["día.md (6 bytes)"]
    assert [(f.path, f.size) for f in alice.files()] == [("a.txt", 0), ("notes/día.md", 6)]


def test_a_new_folder_is_empty_and_a_missing_file_is_missing(root: BaseWorkspace) -> None:
    """A session that wrote nothing lists nothing and has no files; a read is `FileMissing`."""
    fresh = root.scoped(BOB)
    assert fresh.list_dir(".") == []
    assert fresh.files() == []
    with pytest.raises(FileMissing, match="does not exist"):
        fresh.read_text("nothing.txt")
    with pytest.raises(FileMissing):
        fresh.list_dir("no/such/folder")


def test_a_write_over_the_limit_is_refused_and_leaves_nothing(root: BaseWorkspace) -> None:
    """20 MB is refused before anything is stored; an existing file keeps its old content."""
    alice = root.scoped(ALICE)
    alice.write_text("big.txt", "old")
    with pytest.raises(ToolRefused, match="write limit"):
        alice.write_text("big.txt", "x" * (20 * MIB))
    with pytest.raises(ToolRefused, match="write limit"):
        alice.write_text("new-big.txt", "x" * (20 * MIB))
    assert alice.read_text("big.txt") == "old"
    assert [f.path for f in alice.files()] == ["big.txt"]


def test_a_file_over_the_read_limit_is_refused(root: BaseWorkspace) -> None:
    """Read through a workspace with a smaller limit than the writer's, a file is refused, not cut."""
    root.scoped(ALICE).write_text("two-kib.txt", "y" * 2048)
    small = root.scoped(ALICE)
    small.max_bytes = 1024
    with pytest.raises(ToolRefused, match="read limit"):
        small.read_text("two-kib.txt")


def test_one_scope_cannot_reach_another(root: BaseWorkspace) -> None:
    """bob's folder does not see alice's file by its name, by `..`, or in its listings."""
    root.scoped(ALICE).write_text("report.md", "alice's")
    bob = root.scoped(BOB)
    for path in ["report.md", "../report.md", f"../../{ALICE}/report.md", f"/workspace/../{ALICE.split('/')[-1]}"]:
        with pytest.raises(ToolFailure):
            bob.read_text(path)
    assert bob.list_dir(".") == [] and bob.files() == []


@pytest.mark.parametrize("path", HOSTILE)
def test_a_hostile_path_is_refused_or_stays_in_its_folder(root: BaseWorkspace, path: str) -> None:
    """Whatever a model writes to, the only files that exist afterwards are in its own folder."""
    alice = root.scoped(ALICE)
    with contextlib.suppress(ToolFailure):
        alice.write_text(path, "planted")
    outside = [f.path for f in root.files() if not f.path.startswith(f"{ALICE}/")]
    assert outside == []
    with pytest.raises(ToolFailure):
        root.scoped(BOB).read_text("escape.txt")


def test_remove_deletes_a_folder_with_everything_in_it_and_nothing_else(root: BaseWorkspace) -> None:
    """Removing alice's folder leaves bob's; removing a missing folder is not an error; the root is never removed."""
    alice, bob = root.scoped(ALICE), root.scoped(BOB)
    for name in ("a.txt", "deep/er/b.txt"):
        alice.write_text(name, "x")
    bob.write_text("keep.txt", "y")
    assert sorted(root.scoped("sessions").subfolders()) == sorted({ALICE.split("/")[1], BOB.split("/")[1]})
    alice.remove()
    alice.remove()
    assert alice.files() == []
    assert [f.path for f in bob.files()] == ["keep.txt"]
    with pytest.raises(ValueError, match="never removed"):
        root.remove()
