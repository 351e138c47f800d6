"""The DICOM node in-process with a fast fake predictor: studies sent by a pynetdicom SCU on
a free port, results received by a pynetdicom storage SCP acting as the destination."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, StoragePresentationContexts, evt

from dicom_fixtures import SeriesSpec, mr_spec, write_series
from hanseg.node.config import Allowed, NodeConfig, Peer
from hanseg.node.jobs import DELIVERED, FAILED
from hanseg.node.service import NodeService
from hanseg.node.worker import ModelInfo
from helpers import FakePredictor

CT = SeriesSpec(n_slices=12)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Destination:
    """A storage SCP that keeps what it receives (the PACS or TPS)."""

    def __init__(self, port: int) -> None:
        self.received: list[pydicom.Dataset] = []
        ae = AE(ae_title="DEST")
        ae.supported_contexts = StoragePresentationContexts
        server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        assert server is not None  # block=False: the running server is returned
        self.server = server

    def _store(self, event) -> int:
        self.received.append(event.dataset)
        return 0x0000

    def stop(self) -> None:
        self.server.shutdown()


def send(paths: list[Path], port: int, calling: str = "SCANNER") -> list[int]:
    """C-STORE every file to the node; the statuses, or [] when the association was refused."""
    ae = AE(ae_title=calling)
    for path in paths:
        ae.add_requested_context(pydicom.dcmread(path).SOPClassUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="HANSEG")
    if not assoc.is_established:
        return []
    try:
        return [int(assoc.send_c_store(pydicom.dcmread(p)).Status) for p in paths]
    finally:
        assoc.release()


def wait_for(condition, seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture
def node(tmp_path):
    """Start a node with ``node(**config changes)``; all are stopped at the end."""
    started: list[NodeService] = []

    def start(**changes) -> NodeService:
        values = {
            "ae_title": "HANSEG",
            "port": free_port(),
            "storage": tmp_path / "storage",
            "destination": Peer("DEST", "127.0.0.1", free_port()),
            "allow": (Allowed("SCANNER", "127.0.0.1"),),
            "bind": "127.0.0.1",
            "stable_seconds": 0.5,
            "retries": 2,
            "retry_seconds": 0.2,
            "retention_hours": 0,
            "poll_seconds": 0.1,
        }
        values.update(changes)
        service = NodeService(NodeConfig(**values), FakePredictor(), ModelInfo("fake", {"fold_0.pt": "ab" * 32}))
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def test_a_study_is_received_segmented_and_delivered(node, tmp_path):
    files = write_series(tmp_path / "in", CT) + write_series(tmp_path / "in", mr_spec())
    service = node()
    destination = Destination(service.config.destination.port)
    try:
        assert send(files, service.config.port) == [0] * len(files)
        wait_for(lambda: [j.status for j in service.queue.jobs()] == [DELIVERED])
        wait_for(lambda: json.loads((service.layout.audit / "1.json").read_text())["status"] == DELIVERED)
    finally:
        destination.stop()
    assert sorted(ds.Modality for ds in destination.received) == ["RTSTRUCT", "SEG"]
    audit = json.loads((service.layout.audit / "1.json").read_text())
    assert audit["study_uid"] == CT.study_uid and audit["model"]["version"] == "fake"
    assert audit["attempts"][0]["ok"] and audit["timings"]["delivered"]
    assert "Test^Patient" not in json.dumps(audit) and "P1" not in json.dumps(audit["series"])
    assert not (service.layout.jobs / "1").exists()  # retention 0: images removed at once


def test_an_unknown_calling_ae_is_refused_and_nothing_is_stored(node, tmp_path):
    files = write_series(tmp_path / "in", CT)
    service = node()
    assert send(files, service.config.port, calling="INTRUDER") == []
    assert not any(service.layout.incoming.rglob("*.dcm")) and service.queue.jobs() == []


def test_a_destination_that_is_down_gets_retries_then_quarantine_keeps_the_data(node, tmp_path):
    files = write_series(tmp_path / "in", CT)
    service = node()  # nothing listens on the destination port
    assert send(files, service.config.port) == [0] * len(files)
    wait_for(lambda: [j.status for j in service.queue.jobs()] == [FAILED])
    # the audit is rewritten just after the status changes: wait for the final one
    wait_for(lambda: json.loads((service.layout.audit / "1.json").read_text())["status"] == FAILED)
    folder = service.layout.quarantine / "1"
    assert json.loads((folder / "reason.json").read_text())["reason"].startswith("not delivered after 2")
    assert len(list((folder / "input").rglob("*.dcm"))) == len(files)
    assert len(list((folder / "output").rglob("*.dcm"))) == 2
    audit = json.loads((service.layout.audit / "1.json").read_text())
    assert [a["ok"] for a in audit["attempts"]] == [False, False]
