"""The Docker image, built and run for real (marker ``container``: ``scripts/run_tests.sh -m container``).

A private Docker engine is started by this module (Debian's ``docker.io``, installed when
missing; root needed) and stopped by its PID at the end. No registry can be reached, so the
base image is made locally (``docker/build_local_base.sh``), and the image is built offline
from a wheelhouse, as a hospital without internet would (``./build.sh --wheelhouse``). Each
test then runs one of the project's own scripts against that image.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ROOT

pytestmark = pytest.mark.container
IMAGE = "hanseg-oar:ci"
BASE = "local/hanseg-base:cpu"
VENV_BIN = Path(sys.executable).parent


def _install_engine() -> None:
    if shutil.which("dockerd") and shutil.which("debootstrap"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "docker.io", "debootstrap"], check=True, env=env, stdout=subprocess.DEVNULL
    )


def _wait_for(env: dict[str, str], seconds: int = 60) -> None:
    for _ in range(seconds):
        if subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError("dockerd did not start")


def _stop(folder: Path) -> None:
    """Stop the engine by the PID it wrote, wait for it, and remove its folder."""
    pid_file = folder / "pid"
    if pid_file.is_file():
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(30):
            if not pid_file.exists():
                break
            time.sleep(1)
    subprocess.run(["umount", str(folder / "exec/netns/default")], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def docker_env() -> Iterator[dict[str, str]]:
    """A private Docker engine: its environment while it runs; stopped by PID afterwards."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the container tier needs root in CI (apt-get install docker.io, dockerd)")
        pytest.skip("the container tier needs root (it installs docker.io and starts dockerd)")
    _install_engine()
    folder = Path(tempfile.mkdtemp(prefix="hanseg-dockerd."))
    with open(folder / "log", "w") as log:  # dockerd's output, closed after _stop
        subprocess.Popen(
            [
                "dockerd",
                f"--data-root={folder}/data",
                f"--exec-root={folder}/exec",
                f"--pidfile={folder}/pid",
                f"--host=unix://{folder}/sock",
                "--iptables=false",
                "--bridge=none",
            ],
            stdout=log,
            stderr=log,
        )
        # HANSEG_BASE_CACHE: the local base is built once per machine (and per change of its
        # recipe), then loaded: build_local_base.sh keys the saved base on its text and settings
        env = {
            "HANSEG_BASE_CACHE": "/var/cache/hanseg/base",
            **os.environ,
            "DOCKER_HOST": f"unix://{folder}/sock",
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "PYTHON": sys.executable,
        }
        try:
            _wait_for(env)
            yield env
        finally:
            _stop(folder)


def run(cmd: list[str], env: dict[str, str], timeout: int = 1500) -> subprocess.CompletedProcess:
    """Run one of the project's scripts from the repository root; fail with its output's tail."""
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    print(done.stdout[-4000:])
    assert done.returncode == 0, (
        f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


@pytest.fixture(scope="module")
def image(docker_env: dict[str, str]) -> str:
    """The image, built offline on a local base: what CI ships."""
    run(["docker/build_local_base.sh", BASE], docker_env)
    run(["./build.sh", "--base", BASE, "--wheelhouse", "--tag", IMAGE], docker_env)
    return IMAGE


def test_image_follows_the_platform_rules(image, docker_env):
    """Non-root numeric user, process.py as entry point, only runtime files, every runtime module
    importing with requirements.txt alone, read-only code, model hashes, no network."""
    run(["docker/check_image.sh", image], docker_env)


def test_faulty_inputs_through_the_container(image, docker_env):
    run(["docker/faulty_inputs.sh", image], docker_env)


def test_test_sh_passes_on_both_layouts(image, docker_env):
    done = run(["./test.sh", image], docker_env)
    assert "PASS: both layouts match the expected outputs" in done.stdout


def test_a_full_size_case_fits_in_4_gb(image, docker_env):
    done = run(["docker/full_size.sh", image], docker_env)
    assert "exit 0 in" in done.stdout


def test_a_2p5d_model_runs_in_the_image_from_opt_ml_model(image, docker_env, tmp_path):
    """The 2.5D network through the container: the shipped plan with SliceFCN (random weights:
    the path, not the scores, is under test here; tests/smoke trains one through process.py)."""
    from benchmarks.network_cost import random_model
    from hanseg.network_kinds import BY_KIND, plain
    from hanseg.plans import NetworkSpec

    model = random_model(
        ROOT / "model", tmp_path / "fcn2p5d", NetworkSpec("SliceFCN", plain(BY_KIND["fcn2p5d"].presets["tiny"]))
    )
    done = run(["docker/other_model.sh", image, str(model)], docker_env)
    assert "both label maps on their CT grids" in done.stdout and "SliceFCN" in done.stdout


def test_export_writes_the_upload_files(image, docker_env):
    out = ROOT / "export"
    try:
        run(["./export.sh", image], docker_env)
        name = image.replace("/", "_").replace(":", "_")
        assert subprocess.run(["gzip", "-t", str(out / f"{name}.tar.gz")]).returncode == 0
        with tarfile.open(out / "model.tar.gz") as tar:
            assert "./plans.json" in tar.getnames()
    finally:
        shutil.rmtree(out, ignore_errors=True)
