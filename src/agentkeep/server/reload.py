"""`agentkeep serve --reload`: restart the serving child when a `.py` file under the TARGET's directory changes.

Uvicorn's reloaders need no help but their watch lists: its polling one walks every directory below
the watched one, a project's `.venv` included (tens of thousands of files, four times a second), and
its watchfiles one needs a package agentkeep does not otherwise use. `SourceReload` is uvicorn's
own supervisor (`BaseReload`: the child process, the signals, the shared socket) with a walk that
skips what is not the user's source: hidden directories (`.venv`, `.git`), virtual environments,
caches and `data/`. A file that changed, or appeared, since the last look restarts the child.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from socket import socket
from typing import Any

from uvicorn.config import Config
from uvicorn.supervisors.basereload import BaseReload

__all__ = ["SourceReload", "source_files"]

# Directory names below the watched one that hold no source of the user's.
SKIPPED = frozenset({"__pycache__", "node_modules", "site-packages", "venv", "env", "data", "build", "dist"})


def source_files(root: Path) -> Iterator[Path]:
    """Every `.py` file under `root`, skipping hidden directories, environments and caches."""
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [
            d
            for d in subdirectories
            if not d.startswith(".") and d not in SKIPPED and not (Path(directory, d) / "pyvenv.cfg").exists()
        ]
        for name in files:
            if name.endswith(".py"):
                yield Path(directory, name)


class SourceReload(BaseReload):
    """Poll the watched directories' source files every `reload_delay` seconds (0.25 by default)."""

    def __init__(self, config: Config, target: Any, sockets: list[socket]) -> None:
        super().__init__(config, target, sockets)
        self.reloader_name = "agentkeep reload"
        self._mtimes: dict[Path, float] | None = None

    def should_restart(self) -> list[Path] | None:
        self.pause()
        now = self._scan()
        before, self._mtimes = self._mtimes, now
        if before is None:
            return None
        changed = [path for path, mtime in now.items() if before.get(path) != mtime]  # edited, or new
        return changed or None

    def _scan(self) -> dict[Path, float]:
        mtimes: dict[Path, float] = {}
        for root in self.config.reload_dirs:
            for path in source_files(Path(root)):
                try:
                    mtimes[path] = path.stat().st_mtime
                except OSError:  # removed between the walk and the look
                    continue
        return mtimes
