"""The DICOM node against a real PACS: Debian's Orthanc, started by this module on free
ports and stopped by its PID; the node as a subprocess with the shipped model on the CPU;
dcmtk's ``storescu`` as the scanner. Skipped locally, failed in CI, when a tool is missing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ROOT, need_tools

NODE_AET, SCANNER_AET, PACS_AET = "HANSEG", "STORESCU", "ORTHANC"
TOOLS = ("Orthanc", "storescu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_pid(proc: subprocess.Popen, sig: int = signal.SIGTERM, seconds: float = 60) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


class Orthanc:
    def __init__(self, folder: Path, node_port: int) -> None:
        self.dicom_port, self.http_port = free_port(), free_port()
        config = {
            "Name": "hanseg-test",
            "DicomAet": PACS_AET,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "Plugins": [],
            "DicomModalities": {"hanseg": [NODE_AET, "127.0.0.1", node_port]},
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "w")  # noqa: SIM115 (open while Orthanc runs)
        self.proc = subprocess.Popen(["Orthanc", str(folder / "orthanc.json")], stdout=self.log, stderr=self.log)

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as rsp:
            return json.loads(rsp.read())

    def wait_up(self, seconds: float = 60) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("Orthanc did not start; see orthanc.log")

    def rtstructs(self, study_uid: str) -> list[dict]:
        return [
            s
            for s in self.get("/series?expand")
            if s["MainDicomTags"].get("Modality") == "RTSTRUCT"
            and self.get(f"/studies/{s['ParentStudy']}")["MainDicomTags"]["StudyInstanceUID"] == study_uid
        ]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[dict]:
    need_tools(*TOOLS)
    folder = tmp_path_factory.mktemp("node-orthanc")
    node_port = free_port()
    pacs = Orthanc(folder, node_port)
    try:
        pacs.wait_up()
        yield {"folder": folder, "pacs": pacs, "node_port": node_port}
    finally:
        stop_pid(pacs.proc)
        pacs.log.close()


def start_node(setup: dict) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "hanseg.node",
        "--ae-title",
        NODE_AET,
        "--port",
        str(setup["node_port"]),
        "--bind",
        "127.0.0.1",
        "--storage",
        str(setup["folder"] / "storage"),
        "--destination",
        f"{PACS_AET}@127.0.0.1:{setup['pacs'].dicom_port}",
        "--allow",
        f"{SCANNER_AET}@127.0.0.1",
        "--model",
        str(ROOT / "model"),
        "--device",
        "cpu",
        "--stable-seconds",
        "3",
        "--retry-seconds",
        "2",
    ]
    with open(setup["folder"] / "node.log", "a") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
    for _ in range(240):  # the model is loaded and timed before the port opens
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", setup["node_port"])) == 0:
                return proc
        assert proc.poll() is None, (setup["folder"] / "node.log").read_text()[-3000:]
        time.sleep(0.5)
    raise RuntimeError("the node did not open its port")


def export(setup: dict, seed: int, patient: str):
    from phantoms.dicom_export import ExportOptions, export_case

    return export_case(
        ROOT / "test/images/ct/case_01_CT.mha",
        ROOT / "test/images/t1-mri/case_01_T1.mha",
        setup["folder"] / f"export-{seed}",
        seed,
        ExportOptions(patient_id=patient),
    )


def storescu(setup: dict, folder: Path) -> None:
    done = subprocess.run(
        [
            "storescu",
            "-aet",
            SCANNER_AET,
            "-aec",
            NODE_AET,
            "+sd",
            "+r",
            "-nh",
            "127.0.0.1",
            str(setup["node_port"]),
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def wait_rtstruct(setup: dict, study_uid: str, seconds: float = 240) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if setup["pacs"].rtstructs(study_uid):
            return
        time.sleep(2)
    raise AssertionError("no RTSTRUCT in Orthanc: " + (setup["folder"] / "node.log").read_text()[-4000:])


def wait_log(setup: dict, text: str, seconds: float = 120) -> None:
    """Until the node's log holds ``text``."""
    log = setup["folder"] / "node.log"
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if text in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"the node never logged {text!r}: " + log.read_text()[-4000:])


def test_studies_come_back_as_rtstructs_in_orthanc_also_after_a_kill_while_working(setup):
    """One study through the node to Orthanc; then a second one, the node killed (SIGKILL) once
    it says it is segmenting that study and before anything was sent, restarted, and the study
    delivered once; the restarted node then stops cleanly on SIGTERM."""
    first, second = export(setup, 1, "NODE1"), export(setup, 2, "NODE2")
    node = start_node(setup)
    try:
        storescu(setup, first.folder)
        wait_rtstruct(setup, first.study_uid)
        storescu(setup, second.folder)
        wait_log(setup, f"segmenting study {second.study_uid}")
    finally:
        stop_pid(node, signal.SIGKILL)
    assert not setup["pacs"].rtstructs(second.study_uid)
    node = start_node(setup)
    try:
        wait_log(setup, "resumed (was running)")
        wait_rtstruct(setup, second.study_uid)
    finally:
        stop_pid(node)
    assert node.returncode == 0
    assert len(setup["pacs"].rtstructs(first.study_uid)) == 1 and len(setup["pacs"].rtstructs(second.study_uid)) == 1
