"""How the DICOM node handles a study over time, in-process with a fake predictor: late
instances make one result on the union that replaces the earlier one, a study sent again
unchanged gives the same objects, a person can force completion and retry a quarantined job,
and the RTSTRUCT is sent after its SEG."""

from __future__ import annotations

import json

import pydicom
import pytest

from dicom_fixtures import SeriesSpec, referenced_slices, sop_uids, write_series
from hanseg.node import actions
from hanseg.node.jobs import DELIVERED, FAILED, RECEIVING, SENDING, SUPERSEDED
from node_helpers import CT, Destination, node_factory, send, wait_for

#: long enough that its first 11 slices are a CT the node accepts (10 at least)
LONG_CT = SeriesSpec(n_slices=16)


@pytest.fixture
def node(tmp_path):
    yield from node_factory(tmp_path)


def audit(service, job_id: int) -> dict:
    return json.loads((service.layout.audit / f"{job_id}.json").read_text())


def statuses(service) -> list[str]:
    return [j.status for j in service.queue.jobs()]


def by_modality(received: list[pydicom.Dataset], modality: str) -> list[pydicom.Dataset]:
    return [ds for ds in received if ds.Modality == modality]


def test_late_slices_make_one_result_on_the_whole_study_that_replaces_the_first(node, tmp_path):
    files = write_series(tmp_path / "in", LONG_CT)
    service = node(retention_hours=1)
    destination = Destination(service.config.destination.port)
    try:
        assert send(files[:11], service.config.port) == [0] * 11
        wait_for(lambda: statuses(service) == [DELIVERED])
        assert send(files[11:], service.config.port) == [0] * 5
        wait_for(lambda: statuses(service) == [DELIVERED, DELIVERED])
        wait_for(lambda: audit(service, 1)["replaced_by_jobs"] == [2])
    finally:
        destination.stop()
    first, second = by_modality(destination.received, "RTSTRUCT")
    assert referenced_slices(first) == sop_uids(files[:11])
    assert referenced_slices(second) == sop_uids(files)  # the union, not the 5 late slices
    assert "replaces" in second.SeriesDescription and "replaces" not in first.SeriesDescription
    assert second.PredecessorStructureSetSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert second.SOPInstanceUID != first.SOPInstanceUID
    seg_first, seg_second = by_modality(destination.received, "SEG")
    assert "replaces" in seg_second.SeriesDescription and seg_second.SOPInstanceUID != seg_first.SOPInstanceUID
    record = audit(service, 2)
    assert record["replaces_job"] == 1 and record["inputs"] == len(files)
    assert {o["replaces_sop_instance_uid"] for o in record["outputs"]} == {
        str(first.SOPInstanceUID),
        str(seg_first.SOPInstanceUID),
    }


@pytest.mark.parametrize("retention_hours", [1, 0], ids=["result-kept", "result-removed"])
def test_a_study_sent_again_unchanged_gives_the_same_objects_not_a_second_structure_set(
    node, tmp_path, retention_hours
):
    """Kept: the stored result is sent again. Removed at once (retention 0): the study is
    segmented again, and the same input gives the same UIDs."""
    files = write_series(tmp_path / "in", CT)
    service = node(retention_hours=retention_hours)
    destination = Destination(service.config.destination.port)
    try:
        send(files, service.config.port)
        wait_for(lambda: statuses(service) == [DELIVERED])
        send(files, service.config.port)
        wait_for(lambda: statuses(service) == [DELIVERED, DELIVERED])
    finally:
        destination.stop()
    assert len(destination.received) == 4
    assert len({str(ds.SOPInstanceUID) for ds in destination.received}) == 2
    assert len({str(ds.SeriesInstanceUID) for ds in destination.received}) == 2
    assert audit(service, 2)["resent_from_job"] == (1 if retention_hours else None)
    assert audit(service, 2)["replaces_job"] is None


def test_late_slices_after_the_data_was_removed_are_quarantined_not_segmented_alone(node, tmp_path):
    files = write_series(tmp_path / "in", LONG_CT)
    service = node(retention_hours=0)
    destination = Destination(service.config.destination.port)
    try:
        send(files[:11], service.config.port)
        wait_for(lambda: statuses(service) == [DELIVERED])
        send(files[11:], service.config.port)
        wait_for(lambda: statuses(service) == [DELIVERED, FAILED])
    finally:
        destination.stop()
    assert len(destination.received) == 2  # nothing made from the 5 late slices alone
    reason = json.loads((service.layout.quarantine / "2" / "reason.json").read_text())
    assert "11 instance(s) that earlier jobs of this study used" in reason["reason"]
    assert "send the whole study again" in reason["what_to_do"]


def test_the_seg_goes_first_and_the_rtstruct_last(node, tmp_path):
    files = write_series(tmp_path / "in", CT)
    service = node()
    destination = Destination(service.config.destination.port)
    try:
        send(files, service.config.port)
        wait_for(lambda: statuses(service) == [DELIVERED])
    finally:
        destination.stop()
    assert [ds.Modality for ds in destination.received] == ["SEG", "RTSTRUCT"]


def test_force_complete_from_the_command_line_skips_the_wait(node, tmp_path):
    files = write_series(tmp_path / "in", CT)
    service = node(stable_seconds=3600)
    destination = Destination(service.config.destination.port)
    try:
        send(files, service.config.port)
        assert statuses(service) == [RECEIVING]
        storage = str(service.config.storage)
        assert actions.main(["force-complete", CT.study_uid, "--storage", storage, "--user", "physicist"]) == 0
        wait_for(lambda: statuses(service) == [DELIVERED])
        wait_for(lambda: audit(service, 1)["status"] == DELIVERED)
    finally:
        destination.stop()
    (action,) = audit(service, 1)["actions"]
    assert action["action"] == "force-complete" and action["user"] == "physicist" and action["at"]
    assert actions.main(["force-complete", "1", "--storage", storage]) == 2  # delivered: nothing to complete


def test_a_quarantined_job_is_retried_from_the_command_line(node, tmp_path):
    files = write_series(tmp_path / "in", CT)
    service = node()  # nothing listens on the destination port: quarantined after 2 attempts
    send(files, service.config.port)
    wait_for(lambda: statuses(service) == [FAILED])
    reason = json.loads((service.layout.quarantine / "1" / "reason.json").read_text())
    assert "sent again later" not in reason["reason"]
    assert f"python -m hanseg.node retry 1 --storage {service.config.storage}" in reason["what_to_do"]
    destination = Destination(service.config.destination.port)
    try:
        assert actions.main(["retry", "1", "--storage", str(service.config.storage), "--user", "tech"]) == 0
        wait_for(lambda: statuses(service) == [DELIVERED])
        wait_for(lambda: audit(service, 1)["status"] == DELIVERED)
    finally:
        destination.stop()
    assert sorted(ds.Modality for ds in destination.received) == ["RTSTRUCT", "SEG"]
    assert [a["action"] for a in audit(service, 1)["actions"]] == ["retry"]
    assert actions.main(["retry", "1", "--storage", str(service.config.storage)]) == 2  # not quarantined now


def test_a_result_not_yet_sent_is_superseded_by_the_one_on_the_whole_study(node, tmp_path):
    files = write_series(tmp_path / "in", LONG_CT)
    service = node(retention_hours=1, retries=5, retry_seconds=2)  # the destination is down at first
    send(files[:11], service.config.port)
    wait_for(lambda: service.queue.jobs()[0].attempts >= 1)
    send(files[11:], service.config.port)
    wait_for(lambda: statuses(service) == [SUPERSEDED, SENDING])
    destination = Destination(service.config.destination.port)
    try:
        wait_for(lambda: statuses(service) == [SUPERSEDED, DELIVERED])
    finally:
        destination.stop()
    rtstruct, seg = by_modality(destination.received, "RTSTRUCT"), by_modality(destination.received, "SEG")
    assert len(rtstruct) == 1 and len(seg) == 1  # the part-study result never went out
    assert referenced_slices(rtstruct[0]) == sop_uids(files)
    assert "replaces" not in rtstruct[0].SeriesDescription  # the destination held nothing to replace
    assert audit(service, 1)["replaced_by_jobs"] == [] and "job 2 made a newer result" in audit(service, 1)["reason"]
