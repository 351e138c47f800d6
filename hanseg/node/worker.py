"""The worker: turns complete studies into delivered results, one job at a time (one GPU).

Each :meth:`Worker.step` (1) marks ready the studies that had no new instance for
``--stable-seconds`` (study level, as mercure's study trigger: the MR of a study is often
sent minutes after its CT, by another modality or a second export, so a series-level
trigger would segment the CT alone); (2) does the next job: a due send first (results
already made), else the oldest ready study; (3) removes the images of delivered jobs older
than ``--retention-hours``. The audit record of a job is rewritten at each of its changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom

from ..dicom.identity import Predecessor
from ..errors import HansegError
from ..layouts.common import Predictor
from ..layouts.dicom import DicomConfig, run_dicom
from .audit import ModelInfo, iso
from .audit import write_audit as write_audit_file
from .config import NodeConfig
from .errors import SendError
from .jobs import DELIVERED, EMPTY, FAILED, READY, RUNNING, SENDING, SUPERSEDED, Job, JobQueue
from .send import send_files
from .storage import Layout, Snapshot, link_outputs, move_tree, remove_received, take_snapshot
from .store import write_atomic
from .telemetry import Telemetry

log = logging.getLogger(__name__)

Sender = Callable[..., None]


def backoff(config: NodeConfig, attempt: int) -> float:
    """Seconds before the next send after ``attempt`` failed ones (1 = the first failed)."""
    return min(config.retry_seconds * 2.0 ** (attempt - 1), config.max_backoff_s)


def recipe_fingerprint(model_fingerprint: str, names: Path | None) -> str:
    """The model and the name map in one sha256: what decides a result besides its input."""
    digest = hashlib.sha256(model_fingerprint.encode())
    if names is not None:
        digest.update(b";names=" + names.read_bytes())
    return digest.hexdigest()


def image_instances(folder: Path, instances: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The instances that are CT or MR images: others (an RTSTRUCT or SEG routed back by the PACS,
    a plan, a dose, a report) do not change what the model is given."""
    found = set()
    for series_uid, sop_uid in instances:
        header = pydicom.dcmread(folder / series_uid / f"{sop_uid}.dcm", stop_before_pixels=True, force=True)
        if str(header.get("Modality", "")).upper() in ("CT", "MR"):
            found.add((series_uid, sop_uid))
    return found


def what_to_do_input(job_id: int, storage: Path) -> str:
    """What a person does about a study that gave no result."""
    return (
        "read the reason: send the missing or corrected series to this node (a new job is made on the whole "
        f"study), or fix the cause and run `python -m hanseg.node retry {job_id} --storage {storage}`"
    )


def predecessors(job: Job) -> dict[str, Predecessor]:
    """The results of ``job``, by CT series UID, as what a newer result replaces."""
    by_series: dict[str, dict[str, dict[str, str]]] = {}
    for o in job.output_list:
        # outputs/<study>/<CT series>/<file>: how a release before ct_series_uid was kept named it
        ct_series = o.get("ct_series_uid") or Path(o["path"]).parent.name
        by_series.setdefault(ct_series, {})[o["type"]] = o
    return {
        ct: Predecessor(
            kinds["rtstruct"]["series_uid"],
            kinds["rtstruct"]["sop_instance_uid"],
            kinds["seg"]["series_uid"],
            kinds["seg"]["sop_instance_uid"],
        )
        for ct, kinds in by_series.items()
        if "rtstruct" in kinds and "seg" in kinds
    }


class Worker:
    """Processes the queue's jobs; the predictor is built once by the caller and reused."""

    def __init__(
        self,
        config: NodeConfig,
        queue: JobQueue,
        predictor: Predictor,
        model: ModelInfo,
        ssl_context: ssl.SSLContext | None = None,
        sender: Sender = send_files,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.config, self.queue, self.predictor, self.model = config, queue, predictor, model
        self.telemetry = telemetry or Telemetry()
        self.ssl_context, self.sender, self.clock = ssl_context, sender, clock
        self.layout = Layout(config.storage)
        self.dicom = DicomConfig(names=config.names, model_version=model.version, model_fingerprint=model.fingerprint)
        #: what decides a result besides its input: the model and the name map (a study sent again
        #: after either changed is segmented again, with new UIDs)
        self.recipe = recipe_fingerprint(model.fingerprint, config.names)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set; a job that has started is finished first."""
        while not stop.is_set():
            self.telemetry.heartbeat(self.clock())
            try:
                busy = self.step()
            except Exception:  # a bug must not stop the node: logged, the job stays where it was
                log.exception("worker step failed; retrying in %g s", self.config.poll_seconds)
                busy = False
            if not busy:
                stop.wait(self.config.poll_seconds)

    def step(self) -> bool:
        """One round (see the module docstring); True if a job was worked on."""
        now = self.clock()
        for job_id in self.queue.promote_stable(now, self.config.stable_seconds):
            self.write_audit(job_id)
        job = self.queue.next_job(now)
        if job is not None:
            self.telemetry.working_on(job.id, now)
            try:
                if job.status == READY:
                    self.segment(job)
                else:
                    self.send(job)
            except Exception as exc:  # a bug or an unforeseen error: the job must not hang in its state
                log.exception("job %d: unexpected error", job.id)
                self._unexpected(job.id, exc)
        self.prune(now)
        return job is not None

    def _unexpected(self, job_id: int, exc: Exception) -> None:
        """A job that hit an error nothing else handled: a segmentation is quarantined with the
        reason, a send counts as a failed attempt (retried, then quarantined)."""
        job = self.queue.get(job_id)
        message = f"unexpected error ({type(exc).__name__}: {exc}); the node's log has the details"
        if job.status == RUNNING:
            self.quarantine(
                job.id,
                RUNNING,
                f"segmentation failed: {message}",
                what_to_do=what_to_do_input(job.id, self.config.storage),
            )
        elif job.status == SENDING:
            self.queue.record_attempt(job.id, self.clock(), False, message)
            self._failed_attempt(job, job.attempts + 1, message)

    # --- segmentation ---------------------------------------------------------------------

    def segment(self, job: Job) -> None:
        if not self.queue.transition(job.id, RUNNING, (READY,), started_at=self.clock(), model_fingerprint=self.recipe):
            return  # more instances arrived just now: the study waits again
        snapshot = take_snapshot(self.layout, job.id, job.study_uid)
        if snapshot is None:
            self.queue.transition(job.id, EMPTY, (RUNNING,), reason="no instance of the study is on this node")
            self.write_audit(job.id)
            return
        self.queue.set_inputs(job.id, snapshot.instances)
        self.write_audit(job.id)
        job = self.queue.get(job.id)
        if not self._handled_without_segmenting(job, snapshot):
            self._run_case(job, snapshot, self.queue.latest_result(job))

    def _handled_without_segmenting(self, job: Job, snapshot: Snapshot) -> bool:
        """Quarantine a study that lost instances an earlier job used, end a job that brings
        nothing new, or send a delivered result again; False: the study is to be segmented."""
        previous = self.queue.previous(job)
        if previous is None:
            return False
        lost = self.queue.earlier_inputs(job) - snapshot.instances
        if lost:
            self.quarantine(
                job.id,
                RUNNING,
                f"{len(lost)} instance(s) that earlier jobs of this study used are no longer on this node "
                f"(removed {self.config.retention_hours:g} h after delivery, --retention-hours); a result from "
                "the rest would be made from part of the study",
                what_to_do="send the whole study again: the node then makes one result from all of it",
            )
            return True
        new = snapshot.instances - self.queue.inputs(previous.id)
        if new:
            if image_instances(snapshot.folder, new):
                return False  # more than before: a new result on the union
            self._nothing_new(job, previous, f"the {len(new)} instance(s) that arrived are no CT or MR")
            return True
        if previous.status in (RUNNING, SENDING):
            self._nothing_new(job, previous)
            return True
        if previous.status == DELIVERED and previous.model_fingerprint == self.recipe:
            self._send_again(job, previous, snapshot)
            return True
        return False  # failed before, or another model or name map: segment again

    def _nothing_new(self, job: Job, previous: Job, why: str = "") -> None:
        reason = (
            f"{why}: nothing the model uses changed since job {previous.id}"
            if why
            else f"every instance was already in job {previous.id}, whose result is being made or sent"
        )
        self.queue.transition(job.id, EMPTY, (RUNNING,), reason=reason)
        log.info("job %d: %s", job.id, reason)
        self.write_audit(job.id)

    def _send_again(self, job: Job, previous: Job, snapshot: Snapshot) -> None:
        """The study was sent again unchanged after delivery (a PACS re-route, a manual re-send):
        the stored result goes out again, with its UIDs, so the receiver keeps one copy. When
        retention already removed it, the study is segmented again: the same input gives the
        same UIDs (:mod:`hanseg.dicom.identity`)."""
        shutil.rmtree(self.layout.job(job.id) / "output", ignore_errors=True)
        try:
            copied = link_outputs(self.layout, previous.output_list, previous.id, job.id)
        except FileNotFoundError:  # removed by retention, or just now by the free-space guard
            self._run_case(job, snapshot, self.queue.get(previous.replaces_job) if previous.replaces_job else None)
            return
        log.info("job %d: the same instances as job %d (delivered): its result is sent again", job.id, previous.id)
        self.queue.transition(
            job.id,
            SENDING,
            (RUNNING,),
            segmented_at=self.clock(),
            next_attempt_at=self.clock(),
            outputs=json.dumps(copied),
            warnings=previous.warnings,
            messages=previous.messages,
            resent_from=previous.id,
            replaces_job=previous.replaces_job,
        )
        self.write_audit(job.id)

    def _run_case(self, job: Job, snapshot: Snapshot, latest: Job | None) -> None:
        """Segment the snapshot. ``latest``: the study's latest result (sending or delivered);
        the new result replaces what the destination holds of it."""
        output, qa = self.layout.job(job.id) / "output", self.layout.job(job.id) / "qa"
        for folder in (output, qa):  # what a killed run left half-made
            shutil.rmtree(folder, ignore_errors=True)
        predecessor = self._delivered(latest)
        replaces = predecessors(predecessor) if predecessor is not None else {}
        log.info(
            "job %d: segmenting study %s (%d instances%s)",
            job.id,
            job.study_uid,
            len(snapshot.instances),
            f"; replaces the result of job {predecessor.id}" if predecessor is not None else "",
        )
        try:
            # the QA picture the dashboard shows (jobs/<id>/qa/<study>/<CT series>.png), removed with
            # the job's images after --retention-hours
            run_dicom(snapshot.folder, output, self.predictor, replace(self.dicom, replaces=replaces, qa_dir=qa))
        except (HansegError, OSError, ValueError, MemoryError) as exc:
            self.quarantine(
                job.id, RUNNING, f"segmentation failed: {exc}", what_to_do=what_to_do_input(job.id, self.config.storage)
            )
            return
        self._after_segmentation(job, output, predecessor, latest)

    def _delivered(self, latest: Job | None) -> Job | None:
        """The result the destination holds: ``latest`` once delivered; while it is still being
        sent (it will be superseded, never sent), the one it would itself have replaced."""
        if latest is None or latest.status == DELIVERED:
            return latest
        return self.queue.get(latest.replaces_job) if latest.replaces_job is not None else None

    def _after_segmentation(self, job: Job, output: Path, predecessor: Job | None, latest: Job | None) -> None:
        studies = json.loads((output / "results.json").read_text())["studies"]
        messages = [m for s in studies for m in s["error_messages"]]
        warnings = [w for s in studies for w in s.get("warnings", [])]
        outputs = [o for s in studies for o in s["outputs"]]
        if not outputs:
            self.quarantine(
                job.id,
                RUNNING,
                "no RTSTRUCT or SEG was made: " + "; ".join(messages),
                messages,
                what_to_do=what_to_do_input(job.id, self.config.storage),
            )
            return
        if latest is not None and {o["sop_instance_uid"] for o in outputs} == {
            o["sop_instance_uid"] for o in latest.output_list
        }:
            # the same CT and MR instances, model and names: the very objects of that job
            self._nothing_new(job, latest, "the instances that arrived are not used by the model (another series)")
            return
        for w in warnings:
            log.warning("job %d: %s", job.id, w)
        replaced = predecessor is not None and any("replaces_sop_instance_uid" in o for o in outputs)
        supersede = latest.id if latest is not None and latest.status == SENDING else None
        segmented_at = self.clock()
        self.queue.segmented(
            job.id,
            supersede,
            f"job {job.id} made a newer result before this was sent",
            segmented_at=segmented_at,
            next_attempt_at=self.clock(),
            messages=json.dumps(messages),
            warnings=json.dumps(warnings),
            outputs=json.dumps(outputs),
            replaces_job=predecessor.id if replaced and predecessor is not None else None,
        )
        self.telemetry.segmented(segmented_at - (job.started_at or segmented_at))
        self.write_audit(job.id)
        if supersede is not None and self.queue.get(supersede).status == SUPERSEDED:
            log.info("job %d: not sent: superseded by job %d", supersede, job.id)
            self.write_audit(supersede)
        if replaced and predecessor is not None:
            self.write_audit(predecessor.id)

    # --- sending --------------------------------------------------------------------------

    def send(self, job: Job) -> None:
        # the SEG first and the RTSTRUCT last, in one association: a planning system that gets
        # the structure set has its SEG too, even when the association fails in between
        ordered = sorted(job.output_list, key=lambda o: o["type"] == "rtstruct")
        paths = [Path(o["path"]) for o in ordered]
        attempt, now = job.attempts + 1, self.clock()
        try:
            missing = [p.name for p in paths if not p.is_file()]
            if missing:
                raise SendError(f"result file(s) {', '.join(missing)} are missing from the job folder")
            self.sender(paths, self.config.destination, self.config.ae_title, self.ssl_context)
        except (SendError, OSError) as exc:
            self.queue.record_attempt(job.id, now, False, str(exc))
            self.telemetry.send_failed(self.clock(), str(exc))
            self._failed_attempt(job, attempt, str(exc))
            return
        delivered_at = self.clock()
        self.queue.record_attempt(job.id, now, True, f"stored by {self.config.destination}")
        self.queue.transition(job.id, DELIVERED, (SENDING,), attempts=attempt, delivered_at=delivered_at)
        self.telemetry.delivered(
            delivered_at - now, delivered_at - job.ready_at if job.ready_at is not None else None, delivered_at
        )
        log.info("job %d: study %s delivered to %s", job.id, job.study_uid, self.config.destination)
        self.write_audit(job.id)
        if job.replaces_job is not None:
            self.write_audit(job.replaces_job)  # its audit names the result that replaced it

    def _failed_attempt(self, job: Job, attempt: int, message: str) -> None:
        if attempt >= self.config.retries:
            self.quarantine(
                job.id,
                SENDING,
                f"not delivered after {attempt} attempt(s): {message}",
                attempts=attempt,
                what_to_do=(
                    f"the results are kept in {self.layout.quarantine / str(job.id) / 'output'}; once "
                    f"{self.config.destination} accepts associations from {self.config.ae_title} again, run "
                    f"`python -m hanseg.node retry {job.id} --storage {self.config.storage}` to send them"
                ),
            )
            return
        wait = backoff(self.config, attempt)
        log.warning(
            "job %d: attempt %d of %d failed (%s); next in %g s", job.id, attempt, self.config.retries, message, wait
        )
        self.queue.transition(job.id, SENDING, (SENDING,), attempts=attempt, next_attempt_at=self.clock() + wait)
        self.write_audit(job.id)

    # --- quarantine, retention, audit ------------------------------------------------------

    def quarantine(
        self,
        job_id: int,
        expected: str,
        reason: str,
        messages: list[str] | None = None,
        what_to_do: str = "",
        **fields: Any,
    ) -> None:
        """Give up on a job: its data goes to ``quarantine/<id>/`` with ``reason.json``, which
        says what went wrong and what a person must do."""
        target = self.layout.quarantine / str(job_id)
        source = self.layout.job(job_id)
        if source.is_dir() and not target.exists():
            move_tree(source, target)
        target.mkdir(parents=True, exist_ok=True)
        job = self.queue.get(job_id)
        write_atomic(
            target / "reason.json",
            (
                json.dumps(
                    {
                        "job_id": job_id,
                        "study_uid": job.study_uid,
                        "reason": reason,
                        "what_to_do": what_to_do,
                        "at": iso(self.clock()),
                    },
                    indent=2,
                )
                + "\n"
            ).encode(),
        )
        extra = {"messages": json.dumps(messages)} if messages is not None else {}
        self.queue.transition(job_id, FAILED, (expected,), reason=reason, what_to_do=what_to_do, **extra, **fields)
        log.error(
            "job %d: study %s QUARANTINED in %s: %s. To do: %s", job_id, job.study_uid, target, reason, what_to_do
        )
        self.write_audit(job_id)
        self.telemetry.quarantined(job_id, job.study_uid, reason, what_to_do)

    def prune(self, now: float | None = None) -> None:
        """Remove the images and results of delivered jobs past ``--retention-hours``, and a
        study's received instances with its newest job (the audit is kept)."""
        now = self.clock() if now is None else now
        for job in self.queue.prunable(now - self.config.retention_hours * 3600):
            shutil.rmtree(self.layout.job(job.id), ignore_errors=True)
            if self.queue.study_settled_after(job):
                used, last_used = self.queue.study_inputs(job.study_uid)
                remove_received(self.layout.incoming / job.study_uid, used, last_used)
            self.queue.mark_pruned(job.id)
            log.info(
                "job %d: images and results removed (retention %g h); the audit is kept",
                job.id,
                self.config.retention_hours,
            )

    def write_audit(self, job_id: int) -> Path:
        job = self.queue.get(job_id)
        return write_audit_file(self.layout, self.queue, job, self.model, str(self.config.destination), self.recipe)
