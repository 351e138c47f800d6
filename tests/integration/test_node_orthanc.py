"""The DICOM node against a real PACS: Debian's Orthanc, started by this module on free
ports and stopped by its PID; the node as a subprocess with the shipped model on the CPU;
dcmtk's ``storescu`` as the scanner. Skipped locally, failed in CI, when a tool is missing.

What a department does to it: a study sent whole; a study of which half the CT had been
acknowledged when the node was killed, the rest sent after the restart; a delivered study
sent again unchanged. The node's handling of a study over time, killed while segmenting and
sending, is tested with a stand-in network in ``test_node_chaos.py``."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from dicom_fixtures import referenced_slices, sop_uids
from helpers import ROOT, need_tools
from orthanc_helpers import NODE_AET, PACS_AET, SCANNER_AET, TOOLS, Orthanc, free_port, stop_pid


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
        "6",
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


def storescu(setup: dict, *paths: Path) -> None:
    """Send files, or folders recursively, as the scanner."""
    done = subprocess.run(
        ["storescu", "-aet", SCANNER_AET, "-aec", NODE_AET, "+sd", "+r", "-nh", "127.0.0.1", str(setup["node_port"])]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def rtstruct_datasets(setup: dict, study_uid: str) -> list[pydicom.Dataset]:
    """Every RTSTRUCT instance Orthanc holds for the study, read back from its files."""
    return [ds for ds in setup["pacs"].datasets("RTSTRUCT") if ds.StudyInstanceUID == study_uid]


def wait_rtstruct(setup: dict, study_uid: str, seconds: float = 240) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if setup["pacs"].rtstructs(study_uid):
            return
        time.sleep(2)
    raise AssertionError("no RTSTRUCT in Orthanc: " + (setup["folder"] / "node.log").read_text()[-4000:])


def wait_delivered(setup: dict, study_uid: str, jobs: int, seconds: float = 120) -> None:
    """Until ``jobs`` jobs of the study are delivered in the node's queue (its database)."""
    database = setup["folder"] / "storage" / "node.sqlite3"
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with sqlite3.connect(database, timeout=30) as db:
            (n,) = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE study_uid=? AND status='delivered'", (study_uid,)
            ).fetchone()
        if n >= jobs:
            return
        time.sleep(0.5)
    raise AssertionError(
        f"fewer than {jobs} delivered jobs of {study_uid}: " + (setup["folder"] / "node.log").read_text()[-4000:]
    )


def wait_log(setup: dict, text: str, seconds: float = 120) -> None:
    """Until the node's log holds ``text``."""
    log = setup["folder"] / "node.log"
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if text in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"the node never logged {text!r}: " + log.read_text()[-4000:])


def test_studies_come_back_once_and_whole_also_after_a_kill_while_receiving(setup):
    """One study through the node to Orthanc. A second one: its MR and half its CT slices
    acknowledged, the node SIGKILLed, restarted, the other half sent: one RTSTRUCT on every
    slice (a restart starts the silence again; the pre-crash arrival time does not make the
    half study complete). The first study sent again unchanged: still one RTSTRUCT in Orthanc.
    The restarted node then stops cleanly on SIGTERM."""
    first, second = export(setup, 1, "NODE1"), export(setup, 2, "NODE2")
    ct = second.ct.files
    half, rest = ct[: len(ct) // 2], ct[len(ct) // 2 :]
    node = start_node(setup)
    try:
        storescu(setup, first.folder)
        wait_rtstruct(setup, first.study_uid)
        others = [f for s in second.series if s is not second.ct for f in s.files]
        storescu(setup, *others, *half)
    finally:
        stop_pid(node, signal.SIGKILL)
    node = start_node(setup)
    try:
        storescu(setup, *rest)
        wait_rtstruct(setup, second.study_uid)
        storescu(setup, first.folder)  # a PACS re-route: the same study, unchanged
        wait_log(setup, "its result is sent again")
        wait_delivered(setup, first.study_uid, 2)  # Orthanc answered every C-STORE of the re-send
    finally:
        stop_pid(node)
    assert node.returncode == 0
    (only,) = rtstruct_datasets(setup, second.study_uid)
    assert referenced_slices(only) == sop_uids(ct)
    assert "replaces" not in only.SeriesDescription
    assert len(rtstruct_datasets(setup, first.study_uid)) == 1
    assert not any((setup["folder"] / "storage" / "quarantine").iterdir())
