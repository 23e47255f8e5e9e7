"""The jail of the object-storage workspace: a path the model gives → the one key it may name.

An S3 key has no symlinks and no `..` of its own, but it has no jail either: `a/../b`, `%2e%2e/x`
and `a\\..\\b` are stored literally, and even obstore's parser writes the prefix object itself for
an empty path. So the check is ours, lexical, and at least as strict as the disk jail; in order:

1. not a string, a control character (NUL, CR, LF…), a backslash or a bidirectional override → refused;
2. absolute → refused, except `/workspace/…`, where `run_python` sees the same folder;
3. a lone surrogate → refused; a file's path ending in `/` or `/.` → refused (it names a folder);
4. split on `/`, dropping empty and `.` segments; any `..` → refused (disk allows `a/../b`; here
   it is refused outright), and so is a segment that decodes (once or twice) to `.`, `..` or
   something holding a slash: `%2e%2e`, `%252e%252e`, `..%2f`;
5. nothing left → refused for a file ("does not name a file"); for a folder it means the folder itself;
6. a segment over 255 bytes or a key over 1,024 bytes (S3's limit) → refused;
7. the key is `<base>/<segments>`, and it must start with `<base>/`: the last line of defence.

The model's bytes are kept as they are (no Unicode normalisation), as on disk.
"""

from __future__ import annotations

from urllib.parse import unquote

from agentkeep.tools._errors import ToolRefused
from agentkeep.tools.disk import SANDBOX_ALIAS
from agentkeep.tools.workspace import shown

__all__ = ["MAX_KEY_BYTES", "object_key"]

MAX_KEY_BYTES = 1024
_MAX_SEGMENT_BYTES = 255
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def object_key(base: str, path: str, *, folder: bool = False) -> str:
    """The key of the file `path` beneath the key prefix `base` (`""` for the bucket's root); with
    `folder`, the key prefix of that folder (`base` itself for `.`). Raises `ToolRefused`."""
    if not isinstance(path, str):
        raise ToolRefused("a path must be a string")
    _check_characters(path)
    relative = _relative(path)
    if not folder and relative.rpartition("/")[2] in ("", "."):
        raise ToolRefused(f"{shown(path)} names a folder, not a file")
    segments = [_segment(part, path) for part in relative.split("/") if part not in ("", ".")]
    if not segments and not folder:
        raise ToolRefused(f"{shown(path)} does not name a file")
    base = base.strip("/")
    key = "/".join([base, *segments]) if base else "/".join(segments)
    if base and key != base and not key.startswith(base + "/"):
        raise ToolRefused(f"{shown(path)} is outside the workspace")  # unreachable after the checks above
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ToolRefused(f"{shown(path)} makes a key longer than {MAX_KEY_BYTES} bytes")
    return key


def _check_characters(path: str) -> None:
    for char in path:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            raise ToolRefused(f"{shown(path)} contains a control character")
        if 0xD800 <= code <= 0xDFFF:
            raise ToolRefused(f"{shown(path)} is not valid Unicode (a lone surrogate)")
        if char == "\\":
            raise ToolRefused(f"{shown(path)} contains a backslash; use / between folders")
        if char in _BIDI:
            raise ToolRefused(f"{shown(path)} contains a bidirectional override character")


def _relative(path: str) -> str:
    if path == SANDBOX_ALIAS or path.startswith(SANDBOX_ALIAS + "/"):
        return path[len(SANDBOX_ALIAS) :]
    if path.startswith("/"):
        raise ToolRefused(f"{shown(path)} is outside the workspace; use a path relative to it")
    return path


def _segment(part: str, path: str) -> str:
    decoded = unquote(unquote(part))
    if part == ".." or decoded in (".", "..") or "/" in decoded or "\\" in decoded:
        raise ToolRefused(f"{shown(path)} goes outside the workspace: '..' and encoded separators are refused")
    if len(part.encode()) > _MAX_SEGMENT_BYTES:
        raise ToolRefused(f"{shown(path)} has a name longer than {_MAX_SEGMENT_BYTES} bytes")
    return part
