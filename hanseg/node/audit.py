"""The audit record of a job: ``<storage>/audit/<job>.json``, rewritten at each of its changes.
UIDs only (never a patient's name or ID), the model, timings, warnings, outputs and what they
replace, sending attempts, and what people did."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from .jobs import Job, JobQueue
from .storage import Layout
from .store import write_atomic


@dataclass(frozen=True)
class ModelInfo:
    """What the audit names as the model: its version and the sha256 of each weight file."""

    version: str
    weights_sha256: dict[str, str] = field(default_factory=dict)
    #: version and weight hashes in one sha256 (:func:`hanseg.model_dir.model_fingerprint`)
    fingerprint: str = "unknown"


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def audit_record(queue: JobQueue, job: Job, model: ModelInfo, destination: str) -> dict[str, Any]:
    """The audit of one job: UIDs only (no patient name or ID), model, timings, attempts."""
    return {
        "job_id": job.id,
        "study_uid": job.study_uid,
        "status": job.status,
        "reason": job.reason,
        "series": [{**s, "last_arrival": iso(s["last_arrival"])} for s in queue.series(job.id)],
        "instances": job.instances,
        "model": {
            "version": model.version,
            "weights_sha256": model.weights_sha256,
            "fingerprint": model.fingerprint,
            # the model and the name map the job was made with, in one sha256
            "recipe_sha256": job.model_fingerprint,
        },
        "software_version": __version__,
        "timings": {
            "first_received": iso(job.first_arrival),
            "last_received": iso(job.last_arrival),
            "ready": iso(job.ready_at),
            "started": iso(job.started_at),
            "segmented": iso(job.segmented_at),
            "delivered": iso(job.delivered_at),
        },
        "what_to_do": job.what_to_do,
        "warnings": job.warning_list,
        "messages": job.message_list,
        "inputs": len(queue.inputs(job.id)),
        "outputs": [{k: v for k, v in o.items() if k != "path"} for o in job.output_list],
        "replaces_job": job.replaces_job,
        "replaced_by_jobs": queue.replaced_by(job.id),
        "resent_from_job": job.resent_from,
        "actions": [{**a, "at": iso(a["at"])} for a in queue.actions(job.id)],
        "destination": destination,
        "attempts": [{**a, "at": iso(a["at"])} for a in queue.attempts(job.id)],
    }


def write_audit(
    layout: Layout, queue: JobQueue, job: Job, model: ModelInfo, destination: str, recipe: str | None = None
) -> Path:
    """Write the job's audit record. A job made with another model or name map (``recipe``: the
    node's now; the job's own is kept in the queue) keeps the model its record named then: a
    record rewritten after an upgrade must not name the new model as the one that made it."""
    record = audit_record(queue, job, model, destination)
    path = layout.audit / f"{job.id}.json"
    if recipe is not None and job.model_fingerprint not in (None, recipe) and path.is_file():
        with contextlib.suppress(ValueError, KeyError):
            record["model"] = json.loads(path.read_text())["model"]
    return write_atomic(path, (json.dumps(record, indent=2) + "\n").encode())
