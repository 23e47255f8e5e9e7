"""Every setting the durable code reads is documented, with its default, in README.md and docs/durable.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentkeep.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DURABLE_SOURCES = ROOT / "src" / "agentkeep" / "durable"

# Settings of every run, documented with the rest; schedules are `[[schedules]]` in agentkeep.toml.
SHARED = {
    "database_url",
    "model",
    "max_concurrent_runs",
    "max_model_requests",
    "run_timeout_s",
    "schedules",
    "workspace_scope",  # the retention sweep of the workspace (docs/tools.md)
}
# The durable engine's own, and how each table names the default of a setting that is None.
DURABLE_DEFAULTS = {
    "worker_concurrency": "AGENTKEEP_MAX_CONCURRENT_RUNS",
    "user_concurrency": None,
    "recovery_s": None,
    "run_retention_days": None,
    "webhook_secret": "unset",
    "webhook_allow_networks": "unset",
    "executor_id": "host:port",
    "app_version": "agentkeep-VERSION+HASH",
}


def _read_by_durable_code() -> set[str]:
    found: set[str] = set()
    for source in DURABLE_SOURCES.glob("*.py"):
        found |= set(re.findall(r"\bsettings\.([a-z_]+)", source.read_text()))
    return found


def test_every_setting_the_durable_code_reads_is_accounted_for() -> None:
    """A new setting read under durable/ must join DURABLE_DEFAULTS (and so the docs) or SHARED."""
    assert _read_by_durable_code() <= SHARED | set(DURABLE_DEFAULTS)
    assert set(DURABLE_DEFAULTS) <= set(Settings.model_fields)


@pytest.mark.parametrize("doc", ["README.md", "docs/durable.md"])
@pytest.mark.parametrize("name", sorted(DURABLE_DEFAULTS))
def test_each_durable_setting_has_a_table_row_with_its_default(doc: str, name: str) -> None:
    """The row names `AGENTKEEP_<NAME>` exactly and gives the default the code has."""
    row = next(
        (line for line in (ROOT / doc).read_text().splitlines() if line.startswith(f"| `AGENTKEEP_{name.upper()}` |")),
        None,
    )
    assert row is not None, f"{doc} has no table row for AGENTKEEP_{name.upper()}"
    default_cell = row.split("|")[2].strip().strip("`")
    default = Settings.model_fields[name].default
    expected = DURABLE_DEFAULTS[name] if default is None else f"{default:g}"
    assert default_cell == expected, f"{doc}: AGENTKEEP_{name.upper()} default {default_cell!r}, code {expected!r}"
