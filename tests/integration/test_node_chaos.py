"""The DICOM node under the accidents of a department, with the real parts: Debian's Orthanc as
the destination (started on free ports, stopped and started again by its PID), dcmtk's
``storescu`` processes and a pynetdicom scanner as senders, and the node as a process that is
SIGKILLed and started again on the same storage. The node runs its real code
(``tests/fake_node.py``) with a stand-in predictor that takes ``FAKE_S`` seconds per study,
so that a kill can land while a study is being segmented.

One scenario (the module fixture), then what Orthanc and the node hold at its end:

1. Four studies from four concurrent ``storescu`` processes; one of them (``paused``) sends
   only 11 of its 16 CT slices and pauses.
2. SIGKILL while the first study is being segmented; start again.
3. Once the paused study's first result (11 slices) is in Orthanc: Orthanc stopped, the rest
   of the paused study sent; its new result sits in the node's retry loop. A fifth study
   (``cut``) is being sent slice by slice (a scanner sending as it reconstructs) when the node
   is SIGKILLed: while sending and while receiving.
4. Orthanc started again, the node too after a downtime longer than the stable time; once
   the retry loop's results are sent, the cut study (still collecting: the silence around the
   kill does not make its first part complete) is sent again whole, as a PACS would.
5. A delivered study sent again, unchanged.
6. SIGTERM: the node exits 0.

Skipped locally, failed in CI, when Orthanc or dcmtk is missing.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from dicom_fixtures import CT_STORAGE, MR_STORAGE, SeriesSpec, mr_spec, referenced_slices, write_series
from hanseg.node.__main__ import main as node_main
from hanseg.node.jobs import DELIVERED, EMPTY, RECEIVING, RUNNING, SENDING, SUPERSEDED, Job, JobQueue
from helpers import ROOT, need_tools
from orthanc_helpers import NODE_AET, PACS_AET, SCANNER_AET, TOOLS, Orthanc, free_port, stop_pid

#: a study is complete after this much silence (the node's --stable-seconds)
STABLE_S = 4.0
#: the stand-in predictor's seconds per study: the window in which a kill lands mid-segmentation
FAKE_S = 1.5
#: the pace of the scanner that is cut off: seconds between two of its C-STOREs
PACE_S = 0.2
#: the longest any one stage may take before the scenario is declared stuck
STAGE_S = 90.0
#: where a job's story ends
FINAL = (DELIVERED, SUPERSEDED, EMPTY)
STEADY = ("steady-1", "steady-2", "steady-3")
PAUSED_FIRST = 11  # CT slices the paused sender sends before its pause (10 make a CT)
#: picks where in its window each kill lands; another seed, other moments (same assertions)
SEED = int(os.environ.get("HANSEG_CHAOS_SEED", "1"))


@dataclass(frozen=True)
class Study:
    """One synthetic study on disk: a CT and a T1 MR with their own study, series, frame of
    reference and patient."""

    name: str
    ct: tuple[Path, ...]
    mr: tuple[Path, ...]
    study_uid: str
    ct_series_uid: str

    @property
    def files(self) -> tuple[Path, ...]:
        return self.ct + self.mr

    @property
    def ct_sops(self) -> set[str]:
        return {p.name for p in self.ct}  # write_series names each file by its SOPInstanceUID


def make_study(root: Path, name: str, ct_slices: int = 12) -> Study:
    ct = SeriesSpec(n_slices=ct_slices, study=name, patient_id=name.upper(), frame_of_reference=name)
    mr = mr_spec(study=name, patient_id=name.upper(), frame_of_reference=name)
    return Study(
        name,
        tuple(write_series(root, ct)),
        tuple(write_series(root, mr)),
        ct.study_uid,
        ct.series_uid,
    )


def wait_until(what: str, condition: Callable[[], bool], seconds: float = STAGE_S, log: Path | None = None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    tail = log.read_text()[-4000:] if log is not None else ""
    raise AssertionError(f"timed out after {seconds:g} s waiting for {what}\n{tail}")


class PacedSender(threading.Thread):
    """A scanner that sends one instance every ``pace`` seconds in one association and stops at
    the first that is not acknowledged (the node was killed under it)."""

    def __init__(self, files: tuple[Path, ...], port: int, pace: float) -> None:
        super().__init__(name="paced-sender", daemon=True)
        self.files, self.port, self.pace = files, port, pace
        self.acknowledged = 0
        self.broken = False

    def run(self) -> None:
        ae = AE(ae_title=SCANNER_AET)
        for sop_class in (CT_STORAGE, MR_STORAGE):
            ae.add_requested_context(sop_class)
        assoc = ae.associate("127.0.0.1", self.port, ae_title=NODE_AET)
        if not assoc.is_established:
            self.broken = True
            return
        try:
            for path in self.files:
                status = assoc.send_c_store(path)
                if int(getattr(status, "Status", -1)) != 0:
                    self.broken = True
                    return
                self.acknowledged += 1
                time.sleep(self.pace)
        except (RuntimeError, OSError):  # the association was already aborted by the peer
            self.broken = True
        finally:
            if assoc.is_established:
                assoc.release()


@dataclass
class Chaos:
    """The running parts of the scenario, and what it observed on the way."""

    folder: Path
    pacs: Orthanc
    node_port: int
    studies: dict[str, Study] = field(default_factory=dict)
    node: subprocess.Popen | None = None
    stages: dict[str, float] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def storage(self) -> Path:
        return self.folder / "storage"

    @property
    def log(self) -> Path:
        return self.folder / "node.log"

    def start_node(self) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "fake_node",
            "--fake-seconds",
            str(FAKE_S),
            "--max-backoff-seconds",
            "1",
            "--ae-title",
            NODE_AET,
            "--port",
            str(self.node_port),
            "--bind",
            "127.0.0.1",
            "--storage",
            str(self.storage),
            "--destination",
            f"{PACS_AET}@127.0.0.1:{self.pacs.dicom_port}",
            "--allow",
            f"{SCANNER_AET}@127.0.0.1",
            "--stable-seconds",
            str(STABLE_S),
            "--retries",
            "1000",  # Orthanc is down for a while: no job may be quarantined for that
            "--retry-seconds",
            "0.5",
            "--retention-hours",
            "24",  # the paused study's first part must still be here when the rest comes
            "--min-free-gb",
            "0",
            "--min-free-percent",
            "0",
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])),
        }
        with open(self.log, "a") as log:
            self.node = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        return self.node

    def wait_node_up(self) -> None:
        node = self.node
        assert node is not None

        def listening() -> bool:
            assert node.poll() is None, self.log.read_text()[-3000:]
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.node_port)) == 0

        wait_until("the node's port", listening, log=self.log)

    def kill_node(self) -> None:
        assert self.node is not None
        stop_pid(self.node, signal.SIGKILL)

    def storescu(self, *paths: Path) -> subprocess.Popen:
        """Send files, or folders recursively, as the scanner (a process of its own)."""
        cmd = ["storescu", "-aet", SCANNER_AET, "-aec", NODE_AET, "+sd", "+r", "-nh", "127.0.0.1", str(self.node_port)]
        return subprocess.Popen([*cmd, *map(str, paths)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def sent(self, *senders: subprocess.Popen) -> None:
        for sender in senders:
            out, _ = sender.communicate(timeout=STAGE_S)
            assert sender.returncode == 0, out[-3000:]

    def logged_since(self, offset: int, text: str) -> bool:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return text in f.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log.stat().st_size

    def jobs(self) -> list[Job]:
        queue = JobQueue(self.storage / "node.sqlite3")
        try:
            return queue.jobs()
        finally:
            queue.close()

    def jobs_of(self, name: str) -> list[Job]:
        return [j for j in self.jobs() if j.study_uid == self.studies[name].study_uid]

    def settled(self) -> bool:
        """No job is still collecting, being segmented or being sent."""
        jobs = self.jobs()
        return bool(jobs) and all(j.status in FINAL for j in jobs)

    def stage(self, name: str, started: float) -> None:
        self.stages[name] = round(time.monotonic() - started, 1)


def run_scenario(chaos: Chaos) -> None:
    studies, rng = chaos.studies, random.Random(SEED)
    chaos.notes["seed"] = SEED
    t = time.monotonic()
    chaos.start_node()
    chaos.pacs.wait_up()
    chaos.wait_node_up()
    chaos.stage("start", t)

    # 1. four concurrent senders; the paused one sends 11 of its 16 CT slices, then pauses
    t = time.monotonic()
    since = chaos.log_size()
    paused = studies["paused"]
    chaos.sent(
        *[chaos.storescu(chaos.folder / "studies" / name) for name in STEADY], chaos.storescu(*paused.ct[:PAUSED_FIRST])
    )
    chaos.stage("1 concurrent senders", t)

    # 2. SIGKILL while the first complete study is being segmented
    t = time.monotonic()
    names = (*STEADY, "paused")

    def segmenting() -> list[str]:
        return [n for n in names if chaos.logged_since(since, f"segmenting study {studies[n].study_uid}")]

    wait_until("a study being segmented", lambda: bool(segmenting()), log=chaos.log)
    time.sleep(rng.uniform(0.0, FAKE_S / 3))  # well inside the stand-in's FAKE_S
    chaos.kill_node()
    (killed,) = segmenting()  # one job at a time: the kill came before the next one started
    chaos.notes["killed while segmenting"] = killed
    assert [j.status for j in chaos.jobs_of(killed)] == [RUNNING], "the kill did not land during the segmentation"
    chaos.start_node()
    chaos.wait_node_up()
    chaos.stage("2 kill while segmenting, restart", t)

    # 3. the paused study's first result reaches Orthanc; then Orthanc goes down, the rest of
    # the paused study comes, and its new result waits in the retry loop
    t = time.monotonic()
    wait_until(
        "the paused study's first RTSTRUCT in Orthanc",
        lambda: bool(chaos.pacs.rtstructs(paused.study_uid)),
        log=chaos.log,
    )
    chaos.pacs.stop()
    chaos.sent(chaos.storescu(*paused.ct[PAUSED_FIRST:], *paused.mr))

    def retrying() -> bool:
        return any(j.status == SENDING and j.replaces_job and j.attempts >= 1 for j in chaos.jobs_of("paused"))

    wait_until("the paused study's new result in the retry loop", retrying, log=chaos.log)
    chaos.stage("3 destination down, rest of the paused study, retry loop", t)

    # ... and a scanner is sending the cut study slice by slice when the node is killed
    t = time.monotonic()
    cut = studies["cut"]
    scanner = PacedSender(cut.files, chaos.node_port, PACE_S)
    scanner.start()
    received = rng.randint(2, len(cut.files) // 2)
    wait_until(f"{received} instances of the cut study acknowledged", lambda: scanner.acknowledged >= received)
    chaos.kill_node()
    scanner.join(STAGE_S)
    chaos.notes["cut study acknowledged before the kill"] = scanner.acknowledged
    assert scanner.broken and scanner.acknowledged < len(cut.files), "the kill did not land while receiving"
    assert any(j.status == SENDING and j.replaces_job for j in chaos.jobs_of("paused")), "not killed while sending"
    chaos.stage("3 kill while sending and receiving", t)

    # 4. Orthanc back, the node started again, the cut study sent again whole
    t = time.monotonic()  # the node is down from here
    chaos.pacs.start()
    chaos.pacs.wait_up()
    # down for longer than the stable time: that silence must not make the cut study complete
    time.sleep(max(0.0, STABLE_S + 1 - (time.monotonic() - t)))
    chaos.start_node()
    chaos.wait_node_up()
    # the PACS sends the cut study again once the node has caught up with its retry loop
    wait_until("the results of the retry loop sent", lambda: all(j.status != SENDING for j in chaos.jobs()))
    assert [j.status for j in chaos.jobs_of("cut")] == [RECEIVING], "the part received before the kill was taken"
    chaos.sent(chaos.storescu(chaos.folder / "studies" / "cut"))
    wait_until("every job delivered", chaos.settled, log=chaos.log)
    chaos.stage("4 restart both, cut study again, all delivered", t)

    # 5. a delivered study sent again, unchanged
    t = time.monotonic()
    chaos.sent(chaos.storescu(chaos.folder / "studies" / "steady-1"))

    def resent() -> bool:
        jobs = chaos.jobs_of("steady-1")
        return len(jobs) == 2 and chaos.settled()

    wait_until("the re-sent study's job done", resent, log=chaos.log)
    chaos.stage("5 delivered study sent again", t)

    # 6. a clean stop
    node = chaos.node
    assert node is not None
    stop_pid(node)
    assert node.returncode == 0, chaos.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    need_tools(*TOOLS)
    folder = tmp_path_factory.mktemp("node-chaos")
    node_port = free_port()
    pacs = Orthanc(folder, node_port)
    state = Chaos(folder, pacs, node_port)
    for name in STEADY:
        state.studies[name] = make_study(folder / "studies", name)
    state.studies["paused"] = make_study(folder / "studies", "paused", ct_slices=16)
    state.studies["cut"] = make_study(folder / "studies", "cut")
    try:
        run_scenario(state)
        yield state
    finally:
        if state.node is not None:
            stop_pid(state.node, signal.SIGKILL)
        pacs.stop()
        print("stages (s):", state.stages, "notes:", state.notes)


@dataclass(frozen=True)
class Held:
    """What Orthanc holds for one CT series: its RTSTRUCTs and SEGs."""

    rtstructs: list[pydicom.Dataset]
    segs: list[pydicom.Dataset]

    def current_rtstructs(self) -> list[pydicom.Dataset]:
        """The RTSTRUCTs that no other one names as its predecessor."""
        replaced = {
            str(item.ReferencedSOPInstanceUID)
            for ds in self.rtstructs
            for item in ds.get("PredecessorStructureSetSequence", [])
        }
        return [ds for ds in self.rtstructs if str(ds.SOPInstanceUID) not in replaced]


def rtstruct_ct(ds: pydicom.Dataset) -> tuple[str, set[str]]:
    """The CT series an RTSTRUCT is drawn on, and the slices its ContourImageSequence names."""
    series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    return str(series.SeriesInstanceUID), referenced_slices(ds)


def seg_ct(ds: pydicom.Dataset) -> tuple[str, set[str]]:
    """The CT series a SEG was made from, and the slices it references."""
    (series,) = ds.ReferencedSeriesSequence
    return str(series.SeriesInstanceUID), {str(i.ReferencedSOPInstanceUID) for i in series.ReferencedInstanceSequence}


@pytest.fixture(scope="module")
def held(chaos: Chaos) -> dict[str, Held]:
    """Orthanc's RTSTRUCTs and SEGs, read back from its files, by study name."""
    rtstructs, segs = chaos.pacs.datasets("RTSTRUCT"), chaos.pacs.datasets("SEG")
    return {
        name: Held(
            [ds for ds in rtstructs if ds.StudyInstanceUID == study.study_uid],
            [ds for ds in segs if ds.StudyInstanceUID == study.study_uid],
        )
        for name, study in chaos.studies.items()
    }


def test_every_study_has_one_current_rtstruct_on_every_ct_slice_sent(chaos, held):
    for name, study in chaos.studies.items():
        current = held[name].current_rtstructs()
        assert len(current) == 1, f"{name}: {len(current)} current RTSTRUCTs of {len(held[name].rtstructs)}"
        assert rtstruct_ct(current[0]) == (study.ct_series_uid, study.ct_sops), name


def test_every_study_has_one_current_seg_on_every_ct_slice_sent_and_one_seg_per_rtstruct(chaos, held):
    """A SEG names no predecessor: the current one is the one made from every slice, and each
    earlier one was made from part of the study."""
    for name, study in chaos.studies.items():
        segs = [seg_ct(ds) for ds in held[name].segs]
        assert len(segs) == len(held[name].rtstructs), name
        assert all(series == study.ct_series_uid for series, _ in segs), name
        assert [sops for _, sops in segs].count(study.ct_sops) == 1, name
        assert all(sops < study.ct_sops for _, sops in segs if sops != study.ct_sops), name


def test_studies_whose_input_never_changed_are_one_rtstruct_and_one_seg_in_orthanc(chaos, held):
    """Steady studies (one of them killed while segmenting, one sent twice) and the cut study
    (killed while receiving, sent again whole before it was complete)."""
    for name in (*STEADY, "cut"):
        assert len(held[name].rtstructs) == 1 and len(held[name].segs) == 1, name
        (rtstruct,) = held[name].rtstructs
        assert "replaces" not in rtstruct.SeriesDescription and "PredecessorStructureSetSequence" not in rtstruct


def test_the_paused_study_got_a_result_from_its_first_part_then_one_that_replaces_it(chaos, held):
    study, paused = chaos.studies["paused"], held["paused"]
    assert len(paused.rtstructs) == 2 and len(paused.segs) == 2
    (current,) = paused.current_rtstructs()
    (earlier,) = [ds for ds in paused.rtstructs if ds is not current]
    assert rtstruct_ct(earlier) == (study.ct_series_uid, {p.name for p in study.ct[:PAUSED_FIRST]})
    assert current.PredecessorStructureSetSequence[0].ReferencedSOPInstanceUID == earlier.SOPInstanceUID
    assert "replaces" in current.SeriesDescription and "replaces" not in earlier.SeriesDescription
    seg_now = next(ds for ds in paused.segs if seg_ct(ds)[1] == study.ct_sops)
    assert "replaces" in seg_now.SeriesDescription


def test_nothing_was_lost_or_quarantined(chaos):
    assert not any((chaos.storage / "quarantine").iterdir())
    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        assert node_main(["jobs", "--storage", str(chaos.storage)]) == 0
    lines = listing.getvalue().splitlines()
    statuses = [line.split()[1] for line in lines]
    assert statuses and set(statuses) <= set(FINAL), listing.getvalue()
    delivered = {line.split()[2] for line in lines if line.split()[1] == DELIVERED}
    assert delivered == {s.study_uid for s in chaos.studies.values()}, listing.getvalue()
    # the re-send was a job of its own, answered (with the same objects: one RTSTRUCT above)
    assert [j.status for j in chaos.jobs_of("steady-1")] == [DELIVERED, DELIVERED]
