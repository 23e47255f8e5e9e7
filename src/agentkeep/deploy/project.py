"""What the deployment files are rendered for: the project's name, its agent, its settings.

Every value here ends up inside a Dockerfile, a YAML file, a systemd unit or a shell script, so
each is checked against a narrow pattern first: a name or TARGET that passes cannot break the
syntax of any of them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from agentkeep.errors import ConfigError

__all__ = ["DEFAULT_AGENT", "Project", "default_name", "existing_password", "find_agent"]

#: Files `init` looks for, in this order, when no agent TARGET is given.
AGENT_CANDIDATES = ("agent.py", "agents.py", "app.py", "main.py")
DEFAULT_AGENT = "agent.py"
DEFAULT_NAME = "agentkeep"

#: Seconds the platform waits beyond the drain before it kills: the preStop pause (5 s) plus margin.
GRACE_MARGIN_S = 15
#: AWS Lambda's hard cap on one invocation.
LAMBDA_MAX_TIMEOUT_S = 900

# A DNS-1123 label that still fits after the longest suffix we add ("-worker", 7 characters).
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,54}[a-z0-9])?$")
# module:attr or path/to/file.py[:attr]: no spaces, quotes or shell/YAML metacharacters.
_TARGET = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*(:[A-Za-z_][A-Za-z0-9_]*)?$")


@dataclass(frozen=True)
class Project:
    """The user's project as the templates see it."""

    name: str
    """Service, image, unit and Kubernetes name (a DNS-1123 label)."""
    agent: str
    """The agent TARGET, relative to the project directory (`agent.py`, `pkg.mod:agent`)."""
    drain_timeout_s: float = 30.0
    """AGENTKEEP_DRAIN_TIMEOUT_S; every platform's stop timeout is set above it."""
    run_timeout_s: float = 300.0
    """AGENTKEEP_RUN_TIMEOUT_S; sizes the Lambda API function's timeout."""
    install_dir: str = ""
    """systemd: where the venv and the code live; empty means /opt/NAME."""
    postgres_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    """Compose: the generated PostgreSQL password (kept if secrets/ already has one)."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"invalid name {self.name!r}: use lowercase letters, digits and '-', at most 56 characters"
            )
        if not _TARGET.match(self.agent) or ".." in self.agent.split("/"):
            raise ConfigError(
                f"invalid agent TARGET {self.agent!r}: expected module:attr or path/to/file.py[:attr], relative to DIR"
            )
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.postgres_password):
            raise ConfigError("the PostgreSQL password in secrets/postgres_password must be URL-safe")

    @property
    def is_file_target(self) -> bool:
        """True for `path/to/file.py[:attr]`, False for an importable `module:attr`."""
        return self.agent.split(":", 1)[0].endswith(".py")

    def agent_under(self, root: str) -> str:
        """The TARGET as seen from another directory: file targets become absolute paths there."""
        return f"{root.rstrip('/')}/{self.agent}" if self.is_file_target else self.agent

    def context(self) -> dict[str, str]:
        """The values the templates substitute, as text."""
        from agentkeep import __version__

        drain = max(1, round(self.drain_timeout_s))
        install_dir = self.install_dir or f"/opt/{self.name}"
        api_timeout = min(LAMBDA_MAX_TIMEOUT_S, round(self.run_timeout_s) + 10)
        return {
            "name": self.name,
            "agent": self.agent,
            "version": __version__,
            "requirement": f"agentkeep[postgres,redis,durable,s3]=={__version__}",
            "drain_s": str(drain),
            "grace_s": str(drain + GRACE_MARGIN_S),
            "install_dir": install_dir,
            "state_dir": f"/var/lib/{self.name}",
            "systemd_agent": self.agent_under(f"{install_dir}/app"),
            "lambda_agent": self.agent_under("/var/task"),
            "lambda_api_timeout_s": str(api_timeout),
            "lambda_worker_timeout_s": str(LAMBDA_MAX_TIMEOUT_S),
            "postgres_password": self.postgres_password,
        }


def default_name(directory: Path) -> str:
    """A valid name made from the project directory's name (`My Agent` → `my-agent`)."""
    slug = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")[:56].strip("-")
    return slug or DEFAULT_NAME


def find_agent(directory: Path) -> str | None:
    """The first conventional agent file in the directory, if any."""
    return next((name for name in AGENT_CANDIDATES if (directory / name).is_file()), None)


def existing_password(directory: Path) -> str | None:
    """The password a previous `init` generated, so a re-run keeps the database reachable."""
    path = directory / "secrets" / "postgres_password"
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").strip() or None
