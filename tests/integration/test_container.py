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


COMPOSE_FILES = ("docker-compose.yml", "docker-compose.cpu.yml", "tests/data/compose.test.yml")
ORTHANC_TEST_IMAGE = "local/orthanc-test:ci"


def _compose_env(folder: Path) -> tuple[Path, dict[str, str]]:
    """compose.env.example with the passwords changed, as a user's .env, and free host ports."""
    from orthanc_helpers import free_port

    text = (ROOT / "compose.env.example").read_text()
    text = text.replace("ORTHANC_PASSWORD=change-me\n", "ORTHANC_PASSWORD=pacs-pw-4-test\n")
    text = text.replace("HANSEG_HTTP_TOKEN=change-me-too\n", "HANSEG_HTTP_TOKEN=token-of-the-compose-test\n")
    ports = {"HANSEG_DICOM_PORT": free_port(), "HANSEG_HTTP_PORT": free_port(), "ORTHANC_HTTP_PORT": free_port()}
    text += "".join(f"{key}={value}\n" for key, value in ports.items())
    (folder / ".env").write_text(text)
    values = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return folder / ".env", values


def _http(url: str, auth: str | None = None, data: bytes | None = None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=data)
    if auth is not None:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_compose_takes_a_first_study_to_an_rtstruct_in_orthanc(image, docker_env, tmp_path):
    """docs/dicom.md's first study, through docker-compose.yml and docker-compose.cpu.yml (plus
    tests/data/compose.test.yml: the image under test, and Debian's Orthanc in place of
    orthancteam/orthanc, which no registry here serves) on free host ports: the node container
    becomes healthy, the sample case exported as DICOM by the image (the docs' command) and sent
    with dcmtk's storescu as SCANNER comes back from Orthanc's REST API as an RTSTRUCT and a SEG; Orthanc
    answers 401 without its password, the dashboard's /healthz 200 on the host's loopback; then
    ``down -v`` by the project name leaves no container, network or volume."""
    import base64
    import json

    import pydicom

    from helpers import need_tools

    (dcmtk_storescu,) = need_tools("storescu")  # dcmtk's (PATH), not pynetdicom's of the same name in .venv/bin
    build = ["docker", "build", "-q", "--network", "host", "--build-arg", f"BASE={BASE}", "-t", ORTHANC_TEST_IMAGE]
    run([*build, "tests/data/orthanc"], docker_env, timeout=600)
    env_file, values = _compose_env(tmp_path)
    project = f"hansegtest{os.getpid()}"
    env = {**docker_env, "HANSEG_TEST_IMAGE": image, "HANSEG_TEST_ORTHANC_IMAGE": ORTHANC_TEST_IMAGE}
    compose = ["docker-compose", "-p", project, "--env-file", str(env_file)]
    compose += [arg for name in COMPOSE_FILES for arg in ("-f", str(ROOT / name))]
    pacs = f"http://127.0.0.1:{values['ORTHANC_HTTP_PORT']}"
    pacs_auth = "Basic " + base64.b64encode(f"admin:{values['ORTHANC_PASSWORD']}".encode()).decode()
    started = time.monotonic()
    try:
        run([*compose, "up", "-d"], env, timeout=300)
        node = run([*compose, "ps", "-q", "node"], env).stdout.strip()
        health = ""
        for _ in range(150):  # the model is loaded before the node listens
            health = run(["docker", "inspect", "-f", "{{.State.Health.Status}}", node], env).stdout.strip()
            if health == "healthy":
                break
            time.sleep(2)
        assert health == "healthy", run([*compose, "logs", "--tail=60"], env).stdout
        print(f"[compose] node healthy {time.monotonic() - started:.0f} s after up")
        status, body = _http(f"http://127.0.0.1:{values['HANSEG_HTTP_PORT']}/healthz")
        assert status == 200, body
        status, body = _http(f"http://127.0.0.1:{values['HANSEG_HTTP_PORT']}/api/jobs")
        assert status == 200 and json.loads(body)["actions_enabled"], body  # the token from .env arrived
        assert _http(f"{pacs}/system")[0] == 401  # authentication on
        assert _http(f"{pacs}/system", pacs_auth)[0] == 200

        # docs/dicom.md's command 4 in a copy of what it reads (the shared checkout stays untouched)
        clone = tmp_path / "clone"
        for part in ("hanseg", "phantoms", "dataset", "test/images"):
            shutil.copytree(ROOT / part, clone / part, ignore=shutil.ignore_patterns("__pycache__"))
        export = [
            *("docker", "run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}", "-v", f"{clone}:/repo", "-w", "/repo"),
            *("--entrypoint", "python3", image, "-m", "phantoms.dicom_export", "--ct", "test/images/ct/case_01_CT.mha"),
            *("--mr", "test/images/t1-mri/case_01_T1.mha", "--output", "first-study"),
        ]
        run(export, env)
        out = clone / "first-study"
        files = sorted(p for p in out.rglob("*") if p.is_file())
        study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        storescu = [dcmtk_storescu, "-aet", "SCANNER", "-aec", "HANSEG", "+sd", "+r", "-nh", "127.0.0.1"]
        run([*storescu, values["HANSEG_DICOM_PORT"], str(out)], env, timeout=300)
        print(f"[compose] {len(files)} files sent {time.monotonic() - started:.0f} s after up")
        # the department's --stable-seconds (60) is not waited for: a person who knows the study
        # is complete says so (docs/dicom.md)
        force = ["python3", "-m", "hanseg.node", "force-complete", study_uid, "--storage", "/storage", "--user", "test"]
        run([*compose, "exec", "-T", "node", *force], env)
        query = json.dumps({"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}).encode()
        modalities: list[str] = []
        for _ in range(150):
            status, body = _http(f"{pacs}/tools/find", pacs_auth, query)
            assert status == 200, body
            modalities = sorted(series["MainDicomTags"].get("Modality", "") for series in json.loads(body))
            if "RTSTRUCT" in modalities:
                break
            time.sleep(2)
        # the node's results only (the scanner sent the images to the node, not to the PACS)
        assert modalities == ["RTSTRUCT", "SEG"], run([*compose, "logs", "--tail=60", "node"], env).stdout
        print(f"[compose] RTSTRUCT in Orthanc {time.monotonic() - started:.0f} s after up")
    finally:
        down = subprocess.run([*compose, "down", "-v"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        left = [
            subprocess.run(
                ["docker", kind, "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"]
                + (["-a"] if kind == "container" else []),
                env=env,
                capture_output=True,
                text=True,
            ).stdout
            for kind in ("container", "network", "volume")
        ]
    assert down.returncode == 0, down.stderr
    assert not "".join(left).strip(), f"left after down -v: {left}"
