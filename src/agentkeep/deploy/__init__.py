"""`agentkeep init`: deployment files for Docker, Compose, systemd, Kubernetes and AWS Lambda.

The templates (package data under `templates/`) line up with the runtime's own behaviour: port
8000 (worker 8001), `/health` and `/ready`, the drain timeout, `./data` as the data directory,
a non-root user and `AGENTKEEP_AUTH=required` wherever the server listens beyond loopback.

    project.py   what the files are rendered for (name, agent TARGET, settings), validated
    render.py    which files each target gets; `{{key}}` substitution
    __init__.py  `init`: render for a directory, then write without clobbering

`init` refuses to overwrite an existing file unless `force` is set, and then it writes nothing
at all, so a project never ends up with half old, half new files. Files that hold the user's own
data once written (requirements.txt, generated secrets) are kept even with `force`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from agentkeep.config import Settings
from agentkeep.deploy.project import DEFAULT_AGENT, Project, default_name, existing_password, find_agent
from agentkeep.deploy.render import TARGETS, Rendered, render, specs_for
from agentkeep.errors import AgentkeepError

__all__ = ["TARGETS", "InitReport", "Project", "Rendered", "init", "render", "specs_for", "write"]


@dataclass
class InitReport:
    """What `init` did, for the CLI to print."""

    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write(files: dict[str, Rendered], directory: Path, *, force: bool = False) -> InitReport:
    """Write rendered files under `directory`; existing files stop everything unless `force`.

    A file that already holds exactly what would be written is no conflict, so targets can be
    added one after another (`--target docker`, later `--target compose`).
    """
    report = InitReport()
    conflicts = sorted(path for path, f in files.items() if not f.keep and _differs(directory / path, f.text))
    if conflicts and not force:
        raise AgentkeepError(
            f"{', '.join(conflicts)} already exist{'s' if len(conflicts) == 1 else ''}; "
            "pass --force to overwrite (nothing was written)"
        )
    for path, rendered in files.items():
        target = directory / path
        if rendered.keep and target.exists():
            report.kept.append(path)
            continue
        if target.exists() and not _differs(target, rendered.text):
            report.unchanged.append(path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_file(target, rendered)
        report.written.append(path)
    return report


def _differs(path: Path, text: str) -> bool:
    """True when the path exists with other content than `text`."""
    try:
        return path.read_text(encoding="utf-8") != text
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError):
        return True


def _write_file(path: Path, rendered: Rendered) -> None:
    # Created with its final mode, so a secret is never readable by others, not even for a moment.
    if path.exists():
        path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, rendered.mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(rendered.text)
    os.chmod(path, rendered.mode)  # the umask may have narrowed it; deploy.sh must stay executable


def init(
    directory: Path,
    target: str = "docker",
    *,
    settings: Settings,
    agent: str | None = None,
    name: str | None = None,
    force: bool = False,
) -> InitReport:
    """Render `target`'s files for the project in `directory` (made if missing) and write them there."""
    if directory.exists() and not directory.is_dir():
        raise AgentkeepError(f"{directory} is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    chosen = agent or settings.target or find_agent(directory)
    if chosen is None:
        chosen = DEFAULT_AGENT
        notes.append(f"no agent file found; the files serve {DEFAULT_AGENT} (pass --agent TARGET to change)")
    project = Project(
        name=name or default_name(directory),
        agent=chosen.removeprefix("./"),
        drain_timeout_s=settings.drain_timeout_s,
        run_timeout_s=settings.run_timeout_s,
        **({"postgres_password": p} if (p := existing_password(directory)) else {}),
    )
    agent_file = project.agent.split(":", 1)[0]
    if project.is_file_target and not notes and not (directory / agent_file).is_file():
        notes.append(f"{agent_file} is not in {directory}; the files expect it there")
    report = write(render(target, project), directory, force=force)
    report.notes = notes + _requirements_note(directory, report)
    return report


def _requirements_note(directory: Path, report: InitReport) -> list[str]:
    if "requirements.txt" not in report.kept:
        return []
    text = (directory / "requirements.txt").read_text(encoding="utf-8", errors="replace")
    if "agentkeep" in text:
        return []
    return ["requirements.txt exists and does not name agentkeep: add agentkeep[postgres,redis,durable,s3] to it"]
