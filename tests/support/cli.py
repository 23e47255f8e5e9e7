"""`agentkeep` commands (keys, backup, restore) as real subprocesses, the way an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m agentkeep ARGS` with only the given AGENTKEEP_* variables; capture its output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKEEP_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agentkeep", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def create_key(database_url: str, cwd: Path, user: str, *, admin: bool = False) -> str:
    """A new API key for `user`, from `agentkeep keys create` (stdout is the key alone)."""
    args = ["keys", "create", "--user", user, *(["--admin"] if admin else [])]
    result = run_cli(*args, cwd=cwd, env={"AGENTKEEP_DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def make_key(database_url: str, user: str, *, admin: bool = False) -> str:
    """A new API key made in this process: quicker than `create_key` where the CLI is not under test."""
    import asyncio

    from agentkeep.stores.keys import open_key_store

    async def create() -> str:
        async with open_key_store(database_url) as keys:
            return (await keys.create(user, admin=admin)).token

    return asyncio.run(create())
