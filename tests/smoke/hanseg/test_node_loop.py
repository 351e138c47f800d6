"""The DICOM node in-process with a fast fake predictor: studies sent by a pynetdicom SCU on
a free port, results received by a pynetdicom storage SCP acting as the destination."""

from __future__ import annotations

import json

import pytest

from dicom_fixtures import mr_spec, write_series
from hanseg.node.jobs import DELIVERED, FAILED
from node_helpers import CT, Destination, node_factory, send, wait_for


@pytest.fixture
def node(tmp_path):
    yield from node_factory(tmp_path)


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
