"""`agentkeep init`: which files each target writes, rendered for the project, never clobbering."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentkeep.config import Settings
from agentkeep.deploy import TARGETS, Project, init, render, specs_for
from agentkeep.deploy.render import read_template
from agentkeep.errors import AgentkeepError, ConfigError
from tests.deploy.support import init_project, settings


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKEEP_")}
    return subprocess.run(
        [sys.executable, "-m", "agentkeep", "init", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_cli_writes_the_compose_files_and_refuses_to_overwrite_them(tmp_path: Path) -> None:
    """A second `init` exits 1 naming the files that exist, and changes nothing; --force rewrites."""
    (tmp_path / "agent.py").write_text("agent = None\n")
    first = _cli("--target", "compose", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "wrote compose.yaml" in first.stdout
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# mine\n")

    second = _cli("--target", "compose", cwd=tmp_path)
    assert second.returncode == 1
    assert second.stderr.startswith("agentkeep: error: ")
    assert "Dockerfile" in second.stderr and "--force" in second.stderr
    assert "Traceback" not in second.stderr
    assert dockerfile.read_text() == "# mine\n"

    forced = _cli("--target", "compose", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "ARG BASE=python:3.12-slim" in dockerfile.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "Not A Name"], "invalid name"),
        (["--agent", "agent.py; rm -rf /"], "invalid agent TARGET"),
        (["a-file"], "is not a directory"),
    ],
)
def test_cli_rejects_bad_input_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    """A bad name, a TARGET that could break a file's syntax, or a DIR that is a file: one line, no files."""
    (tmp_path / "a-file").write_text("")
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "Dockerfile").exists()


def test_a_dir_that_does_not_exist_yet_is_made(tmp_path: Path) -> None:
    """`agentkeep init --target all deploy/bot` makes the folders and writes every file there."""
    result = _cli("--target", "all", "deploy/bot", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "deploy" / "bot" / "Dockerfile").is_file()
    assert (tmp_path / "deploy" / "bot" / "deploy" / "k8s" / "server.yaml").is_file()


def test_the_docs_sections_the_files_point_to_exist() -> None:
    """A template that says `see docs/X.md ("Section")` names a heading that is there."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    templates = Path(__file__).resolve().parents[2] / "src" / "agentkeep" / "deploy" / "templates"
    references = [
        (path.name, page, section)
        for path in templates.rglob("*")
        if path.is_file()
        for page, section in re.findall(r'docs/([\w-]+\.md) \("([^"]+)"\)', path.read_text())
    ]
    assert len(references) >= 3
    for name, page, section in references:
        headings = [line.lstrip("#").strip() for line in (docs / page).read_text().splitlines() if line.startswith("#")]
        assert section in headings, (name, page, section)


def test_following_the_wheel_instructions_installs_agentkeep_from_the_projects_wheels(tmp_path: Path) -> None:
    """requirements.txt says how to use a wheel of agentkeep when the index has none: uncommenting
    its `--find-links wheels` line makes pip take the wheel from wheels/ beside the file, whatever
    the directory pip runs in (as the Dockerfile's `COPY wheels/` puts them beside it in the image)."""
    import zipfile

    from agentkeep import __version__

    init_project(tmp_path / "bot", "docker")
    requirements = tmp_path / "bot" / "requirements.txt"
    text = requirements.read_text()
    assert "pip wheel --no-deps" in text and "# --find-links wheels\n" in text
    assert "# COPY wheels/ /tmp/wheels/" in (tmp_path / "bot" / "Dockerfile").read_text()
    requirements.write_text(text.replace("# --find-links wheels\n", "--find-links wheels\n"))
    wheels = tmp_path / "bot" / "wheels"
    wheels.mkdir()
    dist = f"agentkeep-{__version__}.dist-info"
    with zipfile.ZipFile(wheels / f"agentkeep-{__version__}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: agentkeep\nVersion: {__version__}\n")
        wheel.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{dist}/RECORD", "")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps", "--no-index"]
    # This machine's own pip configuration (links, constraints) stays out: only the file's line may lead pip.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    result = subprocess.run([*pip, "-r", str(requirements)], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"Would install agentkeep-{__version__}" in result.stdout


def test_kept_files_survive_force(tmp_path: Path) -> None:
    """requirements.txt and generated secrets are the user's once written: --force keeps them."""
    init_project(tmp_path, "compose")
    password = (tmp_path / "secrets" / "postgres_password").read_text()
    (tmp_path / "requirements.txt").write_text("agentkeep[postgres]\nhttpx\n")
    (tmp_path / "compose.yaml").write_text("services: {}\n")

    report = init(tmp_path, "compose", settings=settings(), force=True)

    assert "requirements.txt" in report.kept
    assert (tmp_path / "requirements.txt").read_text() == "agentkeep[postgres]\nhttpx\n"
    assert (tmp_path / "secrets" / "postgres_password").read_text() == password
    assert "compose.yaml" in report.written


def test_targets_can_be_added_one_after_another(tmp_path: Path) -> None:
    """Files already holding what would be written are no conflict: docker, then compose, works."""
    init_project(tmp_path, "docker")
    report = init(tmp_path, "compose", settings=settings())
    assert sorted(report.unchanged) == [".dockerignore", "Dockerfile", "deploy.sh"]
    assert "compose.yaml" in report.written


def test_database_url_follows_an_existing_password(tmp_path: Path) -> None:
    """If only secrets/database.env is gone, the regenerated URL still carries the kept password."""
    init_project(tmp_path, "compose")
    password = (tmp_path / "secrets" / "postgres_password").read_text().strip()
    (tmp_path / "secrets" / "database.env").unlink()

    init(tmp_path, "compose", settings=settings(), force=True)

    env = (tmp_path / "secrets" / "database.env").read_text()
    assert f"postgresql://agentkeep:{password}@postgres:5432/agentkeep" in env


def test_secrets_are_private_and_deploy_sh_is_executable(tmp_path: Path) -> None:
    """Generated secrets are 0600 from the start; deploy.sh keeps its exec bit under any umask."""
    old = os.umask(0o077)
    try:
        init_project(tmp_path, "all")
    finally:
        os.umask(old)
    for secret in ("postgres_password", "database.env"):
        assert stat.S_IMODE((tmp_path / "secrets" / secret).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "deploy.sh").stat().st_mode) == 0o755
    assert (tmp_path / "secrets" / ".gitignore").read_text().splitlines()[-2:] == ["*", "!.gitignore"]


def test_every_template_is_fully_substituted() -> None:
    """No `{{...}}` survives rendering, for every target, and every placeholder has a value."""
    files = render("all", Project(name="shop-bot", agent="bots/shop.py:agent"))
    assert {spec.path.replace("{{name}}", "shop-bot") for spec in specs_for("all")} == set(files)
    for path, rendered in files.items():
        assert "{{" not in rendered.text, path


def test_files_follow_the_users_settings(tmp_path: Path) -> None:
    """A 50 s drain gives a 65 s stop timeout everywhere; the agent and name are the user's."""
    init_project(tmp_path / "My Shop", "all", drain_timeout_s=50, run_timeout_s=120)
    root = tmp_path / "My Shop"
    compose = yaml.safe_load((root / "compose.yaml").read_text())
    agent = compose["services"]["agent"]
    assert compose["name"] == "my-shop"
    assert agent["stop_grace_period"] == "65s"
    assert agent["environment"]["AGENTKEEP_DRAIN_TIMEOUT_S"] == "50"
    assert agent["environment"]["AGENTKEEP_AUTH"] == "required"
    assert agent["command"][:3] == ["agentkeep", "serve", "agent.py"]
    unit = (root / "deploy" / "systemd" / "my-shop.service").read_text()
    assert "TimeoutStopSec=65\n" in unit
    assert "ExecStart=/opt/my-shop/venv/bin/agentkeep serve /opt/my-shop/app/agent.py --host 0.0.0.0" in unit
    server = yaml.safe_load((root / "deploy" / "k8s" / "server.yaml").read_text())
    assert server["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 65
    sam = (root / "template.yaml").read_text()
    assert "Timeout: 130\n" in sam
    assert "AGENTKEEP_DRAIN_TIMEOUT_S=50" in (root / "Dockerfile").read_text()


def test_every_platform_waits_longer_than_the_drain() -> None:
    """Stop timeouts exceed the drain by the preStop pause plus margin on every platform."""
    project = Project(name="a", agent="agent.py", drain_timeout_s=30)
    files = render("all", project)
    compose = yaml.safe_load(files["compose.yaml"].text)
    graces = {compose["services"][name]["stop_grace_period"] for name in ("agent", "api", "worker", "postgres")}
    assert graces == {"45s"}
    for unit in ("deploy/systemd/a.service", "deploy/systemd/a-worker.service"):
        assert re.search(r"^TimeoutStopSec=45$", files[unit].text, re.M)
    for manifest in ("deploy/k8s/server.yaml", "deploy/k8s/worker.yaml"):
        assert yaml.safe_load(files[manifest].text)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45


def test_agent_is_found_or_named(tmp_path: Path) -> None:
    """app.py is found when there is no agent.py; AGENTKEEP_TARGET and --agent win over finding."""
    (tmp_path / "app.py").write_text("agent = None\n")
    init(tmp_path, "docker", settings=settings())
    assert '"serve", "app.py"' in (tmp_path / "Dockerfile").read_text()

    init(tmp_path, "docker", settings=settings(target="pkg.agents:bot"), force=True)
    assert '"serve", "pkg.agents:bot"' in (tmp_path / "Dockerfile").read_text()

    report = init(tmp_path, "docker", settings=Settings(target="x.py"), agent="./app.py", force=True)
    assert '"serve", "app.py"' in (tmp_path / "Dockerfile").read_text()
    assert report.notes == []

    report = init(tmp_path, "docker", settings=settings(), agent="other.py", force=True)
    assert report.notes == [f"other.py is not in {tmp_path}; the files expect it there"]


def test_module_targets_run_from_the_installed_code(tmp_path: Path) -> None:
    """systemd and Lambda take `module:attr` as is; a file TARGET becomes an absolute path there."""
    files = render("all", Project(name="bot", agent="pkg.agents:bot"))
    assert "serve pkg.agents:bot --host" in files["deploy/systemd/bot.service"].text
    assert "AGENTKEEP_TARGET: pkg.agents:bot" in files["template.yaml"].text
    files = render("lambda", Project(name="bot", agent="src/bot.py"))
    assert "AGENTKEEP_TARGET: /var/task/src/bot.py" in files["template.yaml"].text


@pytest.mark.parametrize("target", [*TARGETS, "all"])
def test_each_target_writes_only_its_files(tmp_path: Path, target: str) -> None:
    """Every target writes its own set; `all` is their union."""
    report = init_project(tmp_path / "bot", target)
    assert sorted(report.written) == sorted({s.path.replace("{{name}}", "bot") for s in specs_for(target)})


def test_unknown_target_and_existing_conflicts_are_errors(tmp_path: Path) -> None:
    """The library refuses an unknown target and, without force, writes nothing on a conflict."""
    with pytest.raises(ConfigError):
        specs_for("heroku")
    (tmp_path / "compose.yaml").write_text("mine")
    with pytest.raises(AgentkeepError, match=r"compose\.yaml"):
        init_project(tmp_path, "compose")
    assert not (tmp_path / "Dockerfile").exists()


def test_templates_ship_in_the_package() -> None:
    """Every template a target names is readable as package data."""
    for target in TARGETS:
        for spec in specs_for(target):
            assert read_template(spec.template)
