"""Which files each deployment target gets, and how a template becomes one of them.

Templates are package data under `templates/`, with `{{key}}` placeholders: a syntax no
Dockerfile, YAML file, unit file or shell script uses, so `${VAR}` in them passes through as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from agentkeep.deploy.project import Project
from agentkeep.errors import ConfigError

__all__ = ["TARGETS", "Rendered", "Spec", "read_template", "render", "specs_for"]

TARGETS = ("docker", "compose", "systemd", "k8s", "lambda")

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Spec:
    """One file a target writes."""

    path: str
    """Where it goes, relative to the project directory; may hold `{{name}}`."""
    template: str
    """The template under `templates/`."""
    mode: int = 0o644
    keep: bool = False
    """The user's own data once written (requirements, secrets): never overwritten, even by --force."""


@dataclass(frozen=True)
class Rendered:
    """A file ready to write."""

    text: str
    mode: int
    keep: bool


_REQUIREMENTS = Spec("requirements.txt", "docker/requirements.txt", keep=True)
_IMAGE = (
    Spec("Dockerfile", "docker/Dockerfile"),
    Spec(".dockerignore", "docker/dockerignore"),
    _REQUIREMENTS,
    Spec("deploy.sh", "docker/deploy.sh", mode=0o755),
)
_K8S_FILES = ("kustomization", "configmap", "server", "worker", "service", "pdb", "hpa")

SPECS: dict[str, tuple[Spec, ...]] = {
    "docker": _IMAGE,
    "compose": (
        *_IMAGE,
        Spec("compose.yaml", "compose/compose.yaml"),
        Spec("secrets/.gitignore", "compose/secrets.gitignore", keep=True),
        Spec("secrets/postgres_password", "compose/postgres_password", mode=0o600, keep=True),
        Spec("secrets/database.env", "compose/database.env", mode=0o600, keep=True),
    ),
    "systemd": (
        _REQUIREMENTS,
        Spec("deploy/systemd/{{name}}.service", "systemd/server.service"),
        Spec("deploy/systemd/{{name}}-worker.service", "systemd/worker.service"),
        Spec("deploy/systemd/{{name}}.env", "systemd/agentkeep.env"),
    ),
    "k8s": (*_IMAGE, *(Spec(f"deploy/k8s/{n}.yaml", f"k8s/{n}.yaml") for n in _K8S_FILES)),
    "lambda": (
        _REQUIREMENTS,
        Spec(".dockerignore", "docker/dockerignore"),
        Spec("template.yaml", "lambda/template.yaml"),
        Spec("Dockerfile.lambda", "lambda/Dockerfile"),
    ),
}


def specs_for(target: str) -> list[Spec]:
    """The files of one target, or of every target for `all`, each path once."""
    chosen: tuple[str, ...]
    if target == "all":
        chosen = TARGETS
    elif target in TARGETS:
        chosen = (target,)
    else:
        raise ConfigError(f"unknown deployment target {target!r}: choose from {', '.join((*TARGETS, 'all'))}")
    unique = {spec.path: spec for name in chosen for spec in SPECS[name]}
    return list(unique.values())


def substitute(template: str, context: dict[str, str]) -> str:
    """Fill every `{{key}}`; a key the context lacks is a bug in the template, so it raises."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in context:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return context[key]

    return _PLACEHOLDER.sub(value, template)


def read_template(name: str) -> str:
    """One template's text, from the installed package."""
    return resources.files("agentkeep.deploy").joinpath("templates", name).read_text(encoding="utf-8")


def render(target: str, project: Project) -> dict[str, Rendered]:
    """Every file of `target` (or `all`), keyed by its path relative to the project directory."""
    context = project.context()
    return {
        substitute(spec.path, context): Rendered(
            substitute(read_template(spec.template), context), spec.mode, spec.keep
        )
        for spec in specs_for(target)
    }
