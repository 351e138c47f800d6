"""What a person does to a running node's queue, from the command line (and later the dashboard):

* ``force-complete``: a study that is still collecting is complete now (a sender that is
  known to have finished, when waiting ``--stable-seconds`` is not wanted);
* ``retry``: a quarantined job is worked on again: its results are sent again when they were
  made, otherwise the study is segmented again from everything received for it;
* ``resend``: a delivered result is sent again (the destination lost it, or a second system
  needs it), as a new job with the same objects and UIDs;
* ``jobs``: the queue, one line per job.

Each action is one transaction on ``<storage>/node.sqlite3``, which the running node shares,
and is recorded with the time and the user in the job's audit (written by the node at the
job's next change).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from .errors import NodeError
from .jobs import DELIVERED, EMPTY, FAILED, READY, RECEIVING, RUNNING, SENDING, Job, JobQueue
from .storage import Layout, link_outputs, move_tree

log = logging.getLogger(__name__)

COMMANDS = ("force-complete", "retry", "resend", "jobs")


def _queue(storage: Path) -> JobQueue:
    layout = Layout(storage)
    if not layout.database.is_file():
        raise NodeError(f"{storage} holds no node queue ({layout.database.name} is missing): check --storage")
    return JobQueue(layout.database)


def _job(queue: JobQueue, key: str) -> Job:
    """A job by its number, or the open job of a study by its StudyInstanceUID."""
    if key.isdigit():
        return queue.get(int(key))
    job = queue.open_job(key)
    if job is None:
        raise NodeError(f"study {key} has no job that is still receiving")
    return job


def force_complete(storage: Path, key: str, user: str, now: float) -> Job:
    queue = _queue(storage)
    job = _job(queue, key)
    if job.status == READY:
        log.info("job %d: already complete (ready)", job.id)
        return job
    if job.status != RECEIVING or not queue.force_complete(job.id, now):
        raise NodeError(f"job {job.id} is {job.status}, not receiving: nothing to complete")
    queue.record_action(job.id, now, "force-complete", user)
    log.info("job %d: study %s marked complete by %s (%d instances)", job.id, job.study_uid, user, job.instances)
    return queue.get(job.id)


def retry(storage: Path, key: str, user: str, now: float) -> Job:
    """A quarantined job back to work: sent again when its results exist, else segmented again."""
    queue, layout = _queue(storage), Layout(storage)
    job = _job(queue, key)
    if job.status != FAILED:
        raise NodeError(f"job {job.id} is {job.status}: only a quarantined (failed) job can be retried")
    newer = [j for j in queue.newer_than(job) if j.status not in (FAILED, EMPTY)]
    if newer:
        raise NodeError(
            f"job {newer[-1].id} ({newer[-1].status}) is newer and works on everything received for study "
            f"{job.study_uid}: retrying job {job.id} would deliver an older result after it; retry the newest "
            "quarantined job of the study, or send the study again"
        )
    kept = layout.quarantine / str(job.id)
    if kept.is_dir() and not layout.job(job.id).exists():
        if (kept / "reason.json").exists():  # kept beside the data, as the earlier reason
            os.replace(kept / "reason.json", kept / f"reason-until-retry-{int(now)}.json")
        move_tree(kept, layout.job(job.id))
    outputs = [Path(o["path"]) for o in job.output_list]
    if outputs and all(p.is_file() for p in outputs):
        queue.transition(job.id, SENDING, (FAILED,), attempts=0, next_attempt_at=now, reason=None, what_to_do=None)
        what = "its results are sent again"
    else:
        queue.transition(job.id, READY, (FAILED,), ready_at=now, reason=None, what_to_do=None)
        what = "the study is segmented again from everything received for it"
    queue.record_action(job.id, now, "retry", user, what)
    log.info("job %d: retried by %s: %s", job.id, user, what)
    return queue.get(job.id)


def resend(storage: Path, key: str, user: str, now: float) -> Job:
    """A delivered job's results sent again, by a new job (returned) that links its files: the
    same RTSTRUCT and SEG, with their UIDs, so the destination keeps one copy of each."""
    queue, layout = _queue(storage), Layout(storage)
    job = _job(queue, key)
    if job.status != DELIVERED:
        raise NodeError(f"job {job.id} is {job.status}: only a delivered result can be sent again")
    newer = [j for j in queue.newer_than(job) if j.status in (READY, RUNNING, SENDING, DELIVERED)]
    if newer:
        raise NodeError(
            f"job {newer[-1].id} ({newer[-1].status}) holds a newer result of study {job.study_uid}: sending "
            f"job {job.id} again would put an older result after it; re-send job {newer[-1].id} instead"
        )
    sources = [Path(o["path"]) for o in job.output_list]
    if job.pruned or not sources or not all(p.is_file() for p in sources):
        raise NodeError(
            f"the results of job {job.id} were removed (--retention-hours after delivery): send the study "
            "to the node again; the same input gives the same objects and UIDs"
        )
    # made due in an hour, so the worker cannot send it before its files are linked
    new_id = queue.add_resend(job, now, due=now + 3600)
    outputs = link_outputs(layout, job.output_list, job.id, new_id)
    queue.transition(new_id, SENDING, (SENDING,), outputs=json.dumps(outputs), next_attempt_at=now)
    queue.record_action(new_id, now, "resend", user, f"the results of job {job.id} sent again")
    queue.record_action(job.id, now, "resend", user, f"sent again as job {new_id}")
    log.info("job %d: the results of job %d are sent again, by %s", new_id, job.id, user)
    return queue.get(new_id)


def list_jobs(storage: Path) -> list[Job]:
    return _queue(storage).jobs()


def _describe(job: Job) -> str:
    return (
        f"{job.id:>5}  {job.status:<10}  {job.study_uid}  {job.instances} instance(s)"
        + (f"  replaces job {job.replaces_job}" if job.replaces_job else "")
        + (f"  — {job.reason}" if job.reason else "")
    )


#: the actions by their command (and dashboard) name
ACTIONS: dict[str, Callable[[Path, str, str, float], Job]] = {
    "force-complete": force_complete,
    "retry": retry,
    "resend": resend,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hanseg.node", description="act on a DICOM node's queue")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("force-complete", "a study still receiving is complete now (JOB number or StudyInstanceUID)"),
        ("retry", "a quarantined job is worked on again (JOB number)"),
        ("resend", "a delivered job's results are sent again, by a new job (JOB number)"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("job", metavar="JOB", help="job number (or, for force-complete, the StudyInstanceUID)")
        cmd.add_argument("--storage", type=Path, required=True, help="the node's --storage folder")
        cmd.add_argument("--user", default=None, help="who does it, for the audit (default: the login name)")
    listing = sub.add_parser("jobs", help="list the queue", description="list the queue, one line per job")
    listing.add_argument("--storage", type=Path, required=True, help="the node's --storage folder")
    return p


def main(argv: list[str], clock: Callable[[], float] = time.time) -> int:
    """Exit 0 when done, 2 when the job or storage is wrong (with the reason)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "jobs":
            for job in list_jobs(args.storage):
                print(_describe(job))  # the listing is the command's output, not a log line
            return 0
        user = args.user or getpass.getuser()
        act = ACTIONS[args.command]
        print(_describe(act(args.storage, args.job, user, clock())))
    except NodeError as exc:
        log.error("%s", exc)
        return 2
    return 0
