"""The worker's handling of a study over time, exactly: files put where the receiver puts them,
arrivals counted on an injected clock, the worker stepped by hand, a stand-in sender. No
network, so these run in about a second (the in-process node over DICOM is in the smoke tier)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pydicom
import pytest

from dicom_fixtures import SeriesSpec, write_series
from hanseg.node.audit import ModelInfo
from hanseg.node.config import Allowed, NodeConfig, Peer
from hanseg.node.errors import SendError
from hanseg.node.jobs import DELIVERED, EMPTY, FAILED, JobQueue
from hanseg.node.storage import Layout
from hanseg.node.store import store_instance
from hanseg.node.worker import Worker
from helpers import FakePredictor

CT = SeriesSpec(n_slices=14)


class Clock:
    """Starts at the real time (file times are compared with it) and moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Sent:
    """The stand-in sender: what each call was given, as datasets."""

    def __init__(self) -> None:
        self.calls: list[list[pydicom.Dataset]] = []

    def __call__(self, paths: list[Path], *_: object) -> None:
        self.calls.append([pydicom.dcmread(p) for p in paths])


def make_worker(tmp_path: Path, retention_hours: float = 1.0) -> tuple[Worker, JobQueue, Clock, Sent]:
    config = NodeConfig(
        "HANSEG", 11112, tmp_path / "storage", Peer("DEST", "127.0.0.1", 1), (Allowed("SCANNER"),),
        stable_seconds=60, retention_hours=retention_hours,
    )  # fmt: skip
    queue, clock, sent = JobQueue(Layout(config.storage).database), Clock(), Sent()
    worker = Worker(config, queue, FakePredictor(), ModelInfo("fake", {}, "fp"), sender=sent, clock=clock)
    return worker, queue, clock, sent


def receive(worker: Worker, queue: JobQueue, clock: Clock, paths: list[Path]) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        store_instance(
            worker.layout.incoming, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, path.read_bytes()
        )
        queue.record_arrival(ds.StudyInstanceUID, ds.SeriesInstanceUID, clock())


def settle(worker: Worker, clock: Clock, steps: int = 3) -> None:
    """Let the study fall silent, then let the worker segment and send."""
    clock.now += 61
    for _ in range(steps):
        worker.step()


def test_late_slices_give_a_result_on_the_union_that_replaces_the_first(tmp_path):
    files = write_series(tmp_path / "in", CT)
    worker, queue, clock, sent = make_worker(tmp_path)
    receive(worker, queue, clock, files[:10])
    settle(worker, clock)
    receive(worker, queue, clock, files[10:])
    settle(worker, clock)
    assert [j.status for j in queue.jobs()] == [DELIVERED, DELIVERED]
    first, second = (next(ds for ds in call if ds.Modality == "RTSTRUCT") for call in sent.calls)
    assert [ds.Modality for ds in sent.calls[1]] == ["SEG", "RTSTRUCT"]
    assert len(queue.inputs(2)) == len(files)  # the union, not the 4 late slices
    assert second.PredecessorStructureSetSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert "replaces" in second.SeriesDescription
    assert queue.get(2).replaces_job == 1 and queue.replaced_by(1) == [2]
    assert json.loads((worker.layout.audit / "1.json").read_text())["replaced_by_jobs"] == [2]


def test_a_study_sent_again_unchanged_is_answered_with_the_stored_result(tmp_path):
    files = write_series(tmp_path / "in", CT)
    worker, queue, clock, sent = make_worker(tmp_path)
    receive(worker, queue, clock, files)
    settle(worker, clock)
    receive(worker, queue, clock, files)
    settle(worker, clock)
    assert [j.status for j in queue.jobs()] == [DELIVERED, DELIVERED]
    first, again = ([str(ds.SOPInstanceUID) for ds in call] for call in sent.calls)
    assert first == again
    assert queue.get(2).resent_from == 1 and queue.get(2).replaces_job is None


def test_late_slices_whose_study_was_removed_are_quarantined_with_what_to_do(tmp_path):
    files = write_series(tmp_path / "in", CT)
    worker, queue, clock, sent = make_worker(tmp_path, retention_hours=0)
    receive(worker, queue, clock, files[:10])
    settle(worker, clock)
    receive(worker, queue, clock, files[10:])
    settle(worker, clock)
    assert [j.status for j in queue.jobs()] == [DELIVERED, FAILED]
    assert len(sent.calls) == 1
    reason = json.loads((worker.layout.quarantine / "2" / "reason.json").read_text())
    assert reason["reason"].startswith("10 instance(s) that earlier jobs of this study used")
    assert "whole study" in reason["what_to_do"]


def test_the_results_routed_back_by_the_pacs_make_no_new_result(tmp_path):
    """A PACS that routes the study, results included, back to the node: the RTSTRUCT and SEG
    are no CT or MR, so nothing is segmented or sent again."""
    files = write_series(tmp_path / "in", CT)
    worker, queue, clock, sent = make_worker(tmp_path)
    receive(worker, queue, clock, files)
    settle(worker, clock)
    results = [p for p in (worker.layout.job(1) / "output").rglob("*.dcm")]
    receive(worker, queue, clock, results)
    settle(worker, clock)
    assert [j.status for j in queue.jobs()] == [DELIVERED, EMPTY]
    assert "2 instance(s) that arrived are no CT or MR" in (queue.get(2).reason or "")
    assert len(sent.calls) == 1


def test_a_third_batch_after_the_first_was_removed_is_not_segmented_with_the_second(tmp_path):
    spec = SeriesSpec(n_slices=30)
    files = write_series(tmp_path / "in", spec)
    worker, queue, clock, sent = make_worker(tmp_path, retention_hours=0)
    for batch in (files[:10], files[10:20], files[20:]):
        receive(worker, queue, clock, batch)
        settle(worker, clock)
    assert [j.status for j in queue.jobs()] == [DELIVERED, FAILED, FAILED]
    assert len(sent.calls) == 1  # nothing made from slices 11-30 alone


def test_jobs_that_will_never_be_sent_are_removed_with_the_retention(tmp_path):
    files = write_series(tmp_path / "in", CT)
    worker, queue, clock, _ = make_worker(tmp_path, retention_hours=1)
    receive(worker, queue, clock, files)
    settle(worker, clock)
    receive(worker, queue, clock, [p for p in (worker.layout.job(1) / "output").rglob("*.dcm")])
    settle(worker, clock)
    assert (worker.layout.job(2) / "input").is_dir()  # the empty job's snapshot: links to the images
    clock.now += 3601
    worker.step()
    assert not worker.layout.job(1).exists() and not worker.layout.job(2).exists()
    assert not (worker.layout.incoming / CT.study_uid).exists()
    assert [j.pruned for j in queue.jobs()] == [1, 1]


def test_an_unexpected_error_quarantines_the_job_instead_of_leaving_it_running(tmp_path):
    files = write_series(tmp_path / "in", CT)
    worker, queue, clock, _ = make_worker(tmp_path)

    class Broken:
        def predict(self, ct, mr):
            raise RuntimeError("CUDA out of memory")

    worker.predictor = Broken()
    receive(worker, queue, clock, files)
    settle(worker, clock)
    (job,) = queue.jobs()
    assert job.status == FAILED and "RuntimeError: CUDA out of memory" in (job.reason or "")
    assert (worker.layout.quarantine / "1" / "reason.json").is_file()


def test_a_result_recorded_by_an_older_release_is_still_replaced(tmp_path):
    """Outputs recorded before ``ct_series_uid`` was kept: the CT series is the output's folder."""
    files = write_series(tmp_path / "in", CT)
    worker, queue, clock, _ = make_worker(tmp_path)
    receive(worker, queue, clock, files[:10])
    settle(worker, clock)
    old = [{k: v for k, v in o.items() if k != "ct_series_uid"} for o in queue.get(1).output_list]
    queue._conn().execute("UPDATE jobs SET outputs=? WHERE id=1", (json.dumps(old),))
    receive(worker, queue, clock, files[10:])
    settle(worker, clock)
    assert queue.get(2).replaces_job == 1


def test_retrying_an_old_job_is_refused_when_a_newer_one_holds_the_study(tmp_path):
    from hanseg.node import actions
    from hanseg.node.errors import NodeError

    files = write_series(tmp_path / "in", CT)
    worker, queue, clock, sent = make_worker(tmp_path)

    def refuse(*_: object) -> None:
        raise SendError("destination down")

    worker.sender = refuse
    receive(worker, queue, clock, files[:10])
    for _ in range(6):  # the attempts, then quarantine
        settle(worker, clock)
        clock.now += 4000
    assert queue.get(1).status == FAILED
    worker.sender = sent
    receive(worker, queue, clock, files[10:])
    settle(worker, clock)
    assert queue.get(2).status == DELIVERED
    with pytest.raises(NodeError, match=r"job 2 \(delivered\) is newer"):
        actions.retry(worker.config.storage, "1", "tech", clock())


def test_an_audit_rewritten_after_a_model_upgrade_still_names_the_model_that_made_the_job(tmp_path):
    files = write_series(tmp_path / "in", CT)
    worker, queue, clock, _ = make_worker(tmp_path)
    receive(worker, queue, clock, files)
    settle(worker, clock)
    upgraded = Worker(worker.config, queue, FakePredictor(), ModelInfo("v2", {}, "fp2"), sender=Sent(), clock=clock)
    upgraded.write_audit(1)
    model = json.loads((worker.layout.audit / "1.json").read_text())["model"]
    assert model["version"] == "fake" and model["fingerprint"] == "fp"
