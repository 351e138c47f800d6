"""The worker's handling of a study over time, exactly: files put where the receiver puts them,
arrivals counted on an injected clock, the worker stepped by hand, a stand-in sender. No
network, so these run in about a second (the in-process node over DICOM is in the smoke tier)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pydicom

from dicom_fixtures import SeriesSpec, write_series
from hanseg.node.audit import ModelInfo
from hanseg.node.config import Allowed, NodeConfig, Peer
from hanseg.node.jobs import DELIVERED, FAILED, JobQueue
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
    assert reason["reason"].startswith("10 instance(s) that job 1 used") and "whole study" in reason["what_to_do"]
