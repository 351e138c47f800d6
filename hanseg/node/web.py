"""The node's web service: dashboard, job pages, JSON API, actions, ``/metrics`` and ``/healthz``
(Starlette, served by uvicorn in a thread of the node: :mod:`.webserver`).

Read-only pages need no token, and the service listens on 127.0.0.1 unless ``--http-bind``
says otherwise. The actions (re-queue, force-complete, re-send) need a token
(``Authorization: Bearer TOKEN``, or HTTP basic auth with USER:TOKEN) and a JSON body, so that
a page of another site cannot trigger them through a browser that holds the credentials.
Each action is recorded in the job's audit with the time and the user. No patient name is
shown anywhere: UIDs, and the AccessionNumber only with ``--show-accession``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import pages
from .actions import ACTIONS
from .audit import ModelInfo, iso
from .config import HttpSettings
from .errors import NodeError
from .jobs import DELIVERED, FAILED, RECEIVING, Job, JobQueue
from .metrics import STATE_NAMES, NodeMetrics
from .storage import Layout

log = logging.getLogger(__name__)

#: the newest jobs the dashboard lists (the API takes ?limit=)
DEFAULT_LIMIT = 200
QA_NAME = re.compile(r"^[0-9.]+(/[0-9.]+)?\.png$")


@dataclass(frozen=True)
class WebContext:
    """What the web service reads and does, handed over by :class:`.service.NodeService`."""

    storage: Path
    queue: JobQueue
    model: ModelInfo
    recipe: str  # the fingerprint of the model and name map the node segments with now
    destination: str
    metrics: NodeMetrics
    settings: HttpSettings
    health: Callable[[], tuple[bool, dict[str, Any]]]
    #: rewrite the audit records of these jobs (after an action)
    rewrite_audits: Callable[[list[int]], None]
    clock: Callable[[], float]


def allowed_actions(job: Job) -> list[str]:
    """What a person may do to a job in its state (the action functions check it again)."""
    return {RECEIVING: ["force-complete"], FAILED: ["retry"], DELIVERED: ["resend"]}.get(job.status, [])


# --- reading jobs ------------------------------------------------------------------------------


def qa_folders(layout: Layout, job_id: int) -> tuple[Path, Path]:
    """Where a job's QA pictures are: its job folder, or its quarantine folder (the worker
    moves the whole job folder there)."""
    return layout.job(job_id) / "qa", layout.quarantine / str(job_id) / "qa"


def qa_pictures(layout: Layout, job: Job) -> list[str]:
    """The job's QA pictures, as names relative to its ``qa`` folder; none once retention
    removed the job's images."""
    for folder in qa_folders(layout, job.id):
        if folder.is_dir():
            return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))
    return []


def qa_path(layout: Layout, job_id: int, name: str) -> Path | None:
    if not QA_NAME.match(name):
        return None
    for folder in qa_folders(layout, job_id):
        if (folder / name).is_file():
            return folder / name
    return None


#: study folder -> AccessionNumber, once one was read (a study with none yet is looked at again)
_ACCESSIONS: dict[Path, str] = {}


def _accession(study_folder: Path) -> str | None:
    """The AccessionNumber of the first instance received for the study (header only)."""
    if study_folder in _ACCESSIONS:
        return _ACCESSIONS[study_folder]
    import pydicom  # the node has it loaded already; the lazy import keeps this module light

    for path in sorted(study_folder.glob("*/*.dcm"))[:1]:
        try:
            value = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["AccessionNumber"]).get(
                "AccessionNumber"
            )
        except (OSError, ValueError, pydicom.errors.InvalidDicomError):
            return None
        if value:
            _ACCESSIONS[study_folder] = str(value)
            return str(value)
    return None


@lru_cache(maxsize=4096)
def _audited_model_version(audit: Path) -> str | None:
    try:
        return str(json.loads(audit.read_text())["model"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def model_version(ctx: WebContext, layout: Layout, job: Job) -> str | None:
    """The version of the model that made (or makes) the job's result; None before it started."""
    if job.model_fingerprint is None:
        return None
    if job.model_fingerprint == ctx.recipe:
        return ctx.model.version
    return _audited_model_version(layout.audit / f"{job.id}.json")


def job_summary(ctx: WebContext, layout: Layout, job: Job) -> dict[str, Any]:
    """One job as the dashboard and ``/api/jobs`` show it: UIDs, counts, times, state."""
    summary: dict[str, Any] = {
        "id": job.id,
        "state": STATE_NAMES.get(job.status, job.status),
        "study_uid": job.study_uid,
        "series": len(ctx.queue.series(job.id)),
        "instances": job.instances,
        "received": iso(job.first_arrival),
        "last_received": iso(job.last_arrival),
        "ready": iso(job.ready_at),
        "started": iso(job.started_at),
        "segmented": iso(job.segmented_at),
        "delivered": iso(job.delivered_at),
        "model_version": model_version(ctx, layout, job),
        "warnings": job.warning_list,
        "attempts": job.attempts,
        "reason": job.reason,
        "what_to_do": job.what_to_do,
        "replaces_job": job.replaces_job,
        "resent_from": job.resent_from,
        "images_removed": bool(job.pruned),
        "actions": allowed_actions(job),
    }
    if ctx.settings.show_accession:
        summary["accession"] = _accession(layout.incoming / job.study_uid)
    return summary


# --- the actions' credentials ------------------------------------------------------------------


def authenticate(authorization: str, tokens: tuple[tuple[str, str], ...]) -> str | None:
    """The user a request's ``Authorization`` header names, or None when it matches no token."""
    scheme, _, value = authorization.partition(" ")
    given_user: str | None = None
    if scheme.lower() == "bearer":
        token = value.strip()
    elif scheme.lower() == "basic":
        try:
            given_user, _, token = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
    else:
        return None
    found = None
    for user, expected in tokens:  # every token compared, in constant time
        if hmac.compare_digest(token.encode(), expected.encode()) and given_user in (None, user):
            found = user
    return found


# --- the application ---------------------------------------------------------------------------


def make_app(ctx: WebContext) -> Starlette:
    layout = Layout(ctx.storage)

    statuses = {name: status for status, name in STATE_NAMES.items()}

    def dashboard(request: Request) -> HTMLResponse:
        return HTMLResponse(pages.dashboard(ctx.model.version, ctx.destination, ctx.settings.show_accession))

    def api_jobs(request: Request) -> JSONResponse:
        try:
            limit = max(1, min(int(request.query_params.get("limit", DEFAULT_LIMIT)), 10_000))
        except ValueError:
            return JSONResponse({"error": "limit must be a whole number"}, status_code=400)
        state = request.query_params.get("state") or None
        if state is not None and state not in statuses:
            return JSONResponse({"error": f"no state {state!r}; there are {', '.join(statuses)}"}, status_code=400)
        counts = ctx.queue.counts()
        return JSONResponse(
            {
                "model_version": ctx.model.version,
                "destination": ctx.destination,
                "counts": {name: counts.get(status, 0) for status, name in STATE_NAMES.items()},
                "actions_enabled": bool(ctx.settings.tokens),
                "state": state,
                "jobs": [
                    job_summary(ctx, layout, j)
                    for j in ctx.queue.recent(limit, statuses[state] if state is not None else None)
                ],
            }
        )

    def _get(request: Request) -> Job | None:
        try:
            return ctx.queue.get(int(request.path_params["job_id"]))
        except NodeError:
            return None

    def api_job(request: Request) -> JSONResponse:
        job = _get(request)
        if job is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JSONResponse(job_detail(job))

    def job_detail(job: Job) -> dict[str, Any]:
        audit_path = layout.audit / f"{job.id}.json"
        try:
            audit = json.loads(audit_path.read_text())
        except (OSError, ValueError):
            audit = None
        return {
            **job_summary(ctx, layout, job),
            "qa_pictures": [f"/jobs/{job.id}/qa/{name}" for name in qa_pictures(layout, job)],
            "audit": audit,
        }

    def job_page(request: Request) -> HTMLResponse:
        job = _get(request)
        if job is None:
            return HTMLResponse(pages.not_found(request.path_params["job_id"]), status_code=404)
        return HTMLResponse(pages.job(job_detail(job), bool(ctx.settings.tokens)))

    def qa_picture(request: Request) -> Response:
        path = qa_path(layout, int(request.path_params["job_id"]), request.path_params["name"])
        if path is None:
            return JSONResponse({"error": "no such picture"}, status_code=404)
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def action(request: Request) -> JSONResponse:
        name, job_id = request.path_params["action"], int(request.path_params["job_id"])
        if name not in ACTIONS:
            return JSONResponse({"error": f"no action {name!r}; there are {', '.join(ACTIONS)}"}, status_code=404)
        client = request.client.host if request.client else "unknown address"
        if not ctx.settings.tokens:
            log.warning("action %s on job %d refused (from %s): actions are disabled", name, job_id, client)
            return JSONResponse(
                {
                    "error": "actions are disabled on this node: start it with --http-token-file, "
                    "HANSEG_HTTP_TOKEN or --http-token"
                },
                status_code=403,
            )
        user = authenticate(request.headers.get("authorization", ""), ctx.settings.tokens)
        if user is None:
            log.warning("action %s on job %d refused (from %s): no valid token", name, job_id, client)
            return JSONResponse(
                {"error": "this action needs a valid token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="hanseg-node"'},
            )
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send the action as JSON (Content-Type: application/json)"}, status_code=415)
        try:
            body = await request.json()
        except ValueError:
            body = {}
        person = str(body.get("user", "")).strip()[:64] if isinstance(body, dict) else ""
        recorded = (
            f"{person} ({user} token, dashboard from {client})" if person else f"{user} (dashboard from {client})"
        )
        try:  # in a worker thread: the queue's transaction and the audit's fsync must not hold up the event loop
            job = await run_in_threadpool(ACTIONS[name], ctx.storage, str(job_id), recorded, ctx.clock())
        except NodeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        await run_in_threadpool(ctx.rewrite_audits, sorted({job_id, job.id}))
        log.info("action %s on job %d by %s", name, job_id, recorded)
        return JSONResponse({"ok": True, "job": job_summary(ctx, layout, job)})

    def metrics(request: Request) -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def healthz(request: Request) -> JSONResponse:
        ok, body = ctx.health()
        return JSONResponse(body, status_code=200 if ok else 503)

    def script(request: Request) -> Response:
        return Response(pages.SCRIPT, media_type="text/javascript")

    return Starlette(
        routes=[
            Route("/", dashboard),
            Route("/dashboard.js", script),
            Route("/jobs/{job_id:int}", job_page),
            Route("/jobs/{job_id:int}/qa/{name:path}", qa_picture),
            Route("/api/jobs", api_jobs),
            Route("/api/jobs/{job_id:int}", api_job),
            Route("/api/jobs/{job_id:int}/{action}", action, methods=["POST"]),
            Route("/metrics", metrics),
            Route("/healthz", healthz),
        ]
    )
