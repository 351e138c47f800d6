"""A real PACS for the node's integration tests: Debian's Orthanc, started on free ports and
stopped by its PID, with what the tests read of it (REST API on 127.0.0.1)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pydicom

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
        self.folder = folder
        self.start()

    def start(self) -> None:
        """Start Orthanc, or start it again after :meth:`stop` on the same ports and database:
        a PACS that was down comes back with what it held."""
        self.log = open(self.folder / "orthanc.log", "a")  # noqa: SIM115 (open while Orthanc runs)
        self.proc = subprocess.Popen(["Orthanc", str(self.folder / "orthanc.json")], stdout=self.log, stderr=self.log)

    def stop(self) -> None:
        """SIGTERM, by its PID; then its DICOM port refuses connections until :meth:`start`."""
        stop_pid(self.proc)
        self.log.close()

    def get(self, path: str) -> Any:
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

    def rtstructs(self, study_uid: str) -> list[dict[str, Any]]:
        return [
            s
            for s in self.get("/series?expand")
            if s["MainDicomTags"].get("Modality") == "RTSTRUCT"
            and self.get(f"/studies/{s['ParentStudy']}")["MainDicomTags"]["StudyInstanceUID"] == study_uid
        ]

    def datasets(self, modality: str) -> list[pydicom.Dataset]:
        """Every instance Orthanc holds of ``modality``, read back from its stored file."""
        found: list[pydicom.Dataset] = []
        for series in self.get("/series?expand"):
            if series["MainDicomTags"].get("Modality") != modality:
                continue
            for instance in series["Instances"]:
                url = f"http://127.0.0.1:{self.http_port}/instances/{instance}/file"
                with urllib.request.urlopen(url, timeout=10) as rsp:
                    found.append(pydicom.dcmread(io.BytesIO(rsp.read())))
        return found
