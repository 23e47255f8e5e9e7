"""deploy.sh: build, tag (the git short SHA, --tag, or the build time outside git), push, roll out;
--dry-run shows every command.

The script runs for real under bash in a real git repository. docker, kubectl, ssh and scp are
the only stand-ins: small scripts on PATH that log their arguments (this machine has no
registry or cluster to talk to), so the tests see exactly what the script would run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import init_project

_STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
[[ "$(basename "$0") ${1:-}" != "${STUB_FAIL:-}" ]]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An agent project with every deployment file, not under git, and logging stand-ins on PATH."""
    root = tmp_path / "bot"
    init_project(root, "all")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("docker", "kubectl", "ssh", "scp"):
        (stubs / name).write_text(_STUB)
        (stubs / name).chmod(0o755)
    return root


@pytest.fixture
def repo(project: Path) -> Path:
    """The same project, committed to a git repository."""
    git = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    git |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *command], cwd=project, check=True, env={**os.environ, **git})
    return project


def _deploy(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    stubs = repo.parent / "bin"
    full_env = {k: v for k, v in os.environ.items() if k not in {"REGISTRY", "DEPLOY_HOST", "KUBE_NAMESPACE"}}
    full_env |= {"PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", "STUB_LOG": str(repo.parent / "calls.log")}
    full_env |= env
    return subprocess.run(["bash", "deploy.sh", *args], cwd=repo, env=full_env, capture_output=True, text=True)


def _calls(repo: Path) -> list[str]:
    log = repo.parent / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def _sha(repo: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()


def test_dry_run_prints_every_command_and_runs_none(repo: Path) -> None:
    """--dry-run lists build, push, set image and rollout status, quoted; nothing is executed."""
    result = _deploy(repo, "--dry-run", "k8s", REGISTRY="registry.example.com/team/", KUBE_NAMESPACE="prod")
    assert result.returncode == 0, result.stderr
    image = f"registry.example.com/team/bot:{_sha(repo)}"
    commands = [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert commands == [
        ["docker", "build", "--tag", image, "."],
        ["docker", "push", image],
        ["kubectl", "--namespace", "prod", "set", "image", "deployment/bot", f"agentkeep={image}"],
        ["kubectl", "--namespace", "prod", "set", "image", "deployment/bot-worker", f"agentkeep={image}"],
        ["kubectl", "--namespace", "prod", "rollout", "status", "deployment/bot", "--timeout=5m"],
        ["kubectl", "--namespace", "prod", "rollout", "status", "deployment/bot-worker", "--timeout=5m"],
    ]
    assert _calls(repo) == []
    assert "deployed" not in result.stdout and "dry run: nothing was built" in result.stdout


def test_outside_git_the_tag_is_the_build_time_and_a_dry_run_says_it_deployed_nothing(project: Path) -> None:
    """No git repository (a copied folder, a CI artifact): the image is tagged with the UTC time
    instead of failing on `git rev-parse`, and the dry run ends saying nothing was rolled out."""
    result = _deploy(project, "--dry-run", "k8s", REGISTRY="reg.example.com")
    assert result.returncode == 0, result.stderr
    build = shlex.split(next(line for line in result.stdout.splitlines() if line.startswith("+ ")))
    assert re.fullmatch(r"reg\.example\.com/bot:\d{8}-\d{6}", build[-2]), build
    assert "fatal" not in result.stderr and "deployed" not in result.stdout
    assert _calls(project) == []


def test_tag_names_the_image_in_every_command(project: Path) -> None:
    """--tag v1.4.0 (or --tag=v1.4.0) is the tag, git or not; a real push run ends saying what it pushed."""
    result = _deploy(project, "push", "--tag", "v1.4.0", REGISTRY="reg.example.com")
    assert result.returncode == 0, result.stderr
    assert _calls(project) == [
        "docker build --tag reg.example.com/bot:v1.4.0 .",
        "docker push reg.example.com/bot:v1.4.0",
    ]
    assert result.stdout.strip().endswith("pushed reg.example.com/bot:v1.4.0")
    assert (
        "reg.example.com/bot:v2" in _deploy(project, "--dry-run", "--tag=v2", "push", REGISTRY="reg.example.com").stdout
    )


def test_rollout_runs_the_commands_in_order(repo: Path) -> None:
    """Without --dry-run the same commands run, in order, with the engine chosen by CONTAINER_ENGINE."""
    result = _deploy(repo, "k8s", REGISTRY="reg.example.com", CONTAINER_ENGINE="docker")
    assert result.returncode == 0, result.stderr
    image = f"reg.example.com/bot:{_sha(repo)}"
    assert _calls(repo) == [
        f"docker build --tag {image} .",
        f"docker push {image}",
        f"kubectl set image deployment/bot agentkeep={image}",
        f"kubectl set image deployment/bot-worker agentkeep={image}",
        "kubectl rollout status deployment/bot --timeout=5m",
        "kubectl rollout status deployment/bot-worker --timeout=5m",
    ]
    assert result.stdout.strip().endswith(f"deployed {image}")


def test_a_failed_push_stops_the_rollout(repo: Path) -> None:
    """set -e: when the push fails nothing is rolled out and the script fails."""
    result = _deploy(repo, "k8s", REGISTRY="reg.example.com", STUB_FAIL="docker push")
    assert result.returncode != 0
    assert [call.split()[0] for call in _calls(repo)] == ["docker", "docker"]


def test_compose_rollout_goes_over_ssh(repo: Path) -> None:
    """compose: copy compose.yaml, pull and `up --wait` on DEPLOY_HOST with the new image."""
    result = _deploy(
        repo, "--dry-run", "compose", REGISTRY="reg.example.com", DEPLOY_HOST="ops@box", COMPOSE_PROFILE="fleet"
    )
    assert result.returncode == 0, result.stderr
    image = f"reg.example.com/bot:{_sha(repo)}"
    lines = [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert lines[2] == ["ssh", "ops@box", "mkdir -p '/opt/bot'"]
    assert lines[3] == ["scp", "compose.yaml", "ops@box:/opt/bot/compose.yaml"]
    assert lines[5][:2] == ["ssh", "ops@box"]
    assert f"AGENTKEEP_IMAGE='{image}' docker compose --profile 'fleet' up -d --no-build --wait" in lines[5][2]


def test_uncommitted_changes_mark_the_tag_dirty(repo: Path) -> None:
    """An image built from a modified tree never carries a clean commit's tag."""
    (repo / "agent.py").write_text("agent = 'changed'\n")
    result = _deploy(repo, "--dry-run", "push", REGISTRY="reg.example.com")
    assert f"reg.example.com/bot:{_sha(repo)}-dirty" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["k8s"], {}, "set REGISTRY"),
        (["compose"], {"REGISTRY": "r"}, "set DEPLOY_HOST"),
        (["--dry-run"], {"REGISTRY": "r"}, "Usage"),
        (["helm"], {"REGISTRY": "r"}, "unknown argument: helm"),
        (["push", "--tag"], {"REGISTRY": "r"}, "--tag needs a value"),
    ],
)
def test_missing_settings_fail_with_a_message(repo: Path, args: list[str], env: dict[str, str], message: str) -> None:
    """Missing REGISTRY or DEPLOY_HOST, no mode, or an unknown mode: a non-zero exit that says why."""
    result = _deploy(repo, *args, **env)
    assert result.returncode != 0
    assert message.lower() in (result.stdout + result.stderr).lower()
