"""The node assembled: receiver, queue and worker, started and stopped as one. Built with any
predictor, so that tests run the real node in-process with a fast fake one."""

from __future__ import annotations

import logging
import signal
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ..layouts.common import Predictor
from ..model_dir import load_model_dir, model_fingerprint, sha256_file
from .audit import ModelInfo
from .config import NodeConfig, TlsFiles
from .disk import DiskGuard
from .health import disk_check, listener_check, queue_check, report, worker_check
from .jobs import JobQueue
from .notify import Alerts, Notifier
from .scp import NodeServer, Receiver, start_scp
from .send import send_files
from .storage import Layout, instances_in
from .store import sweep
from .telemetry import Telemetry
from .webserver import WebServer
from .worker import Sender, Worker

log = logging.getLogger(__name__)


def model_info(root: Path, version: str) -> ModelInfo:
    """The version, the sha256 of each weight file and the fingerprint the output UIDs are
    derived from, for the audit (computed once at start)."""
    files = load_model_dir(root)
    return ModelInfo(version, {p.name: sha256_file(p) for p in files.weight_paths}, model_fingerprint(files))


def ssl_context(tls: TlsFiles | None, server: bool) -> ssl.SSLContext | None:
    """TLS for the listening side (``server``) or the sending side; with ``--tls-ca`` the peer
    must present a certificate signed by that CA."""
    if tls is None:
        return None
    purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
    context = ssl.create_default_context(purpose, cafile=str(tls.ca) if tls.ca else None)
    context.load_cert_chain(str(tls.cert), str(tls.key))
    if server and tls.ca:
        context.verify_mode = ssl.CERT_REQUIRED
    if not server and tls.ca is None:
        # no CA given: the link is encrypted but the destination is not authenticated
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def adopt_orphans(layout: Layout, queue: JobQueue, now: float) -> None:
    """Instances in ``incoming/`` that no job counts become a job of their study (a crash
    between a file's write and its count, or a lost database). ``incoming/`` keeps every
    study until its retention ends, so only instances that no job has used are orphans."""
    if not layout.incoming.is_dir():
        return
    for study in sorted(p for p in layout.incoming.iterdir() if p.is_dir()):
        if queue.open_job(study.name) is not None:
            continue
        new = instances_in(study) - queue.latest_inputs(study.name)
        if new:
            queue.adopt(study.name, dict(Counter(series for series, _ in new)), now)


def record_old_inputs(layout: Layout, queue: JobQueue) -> None:
    """Jobs made by a release that did not record what each job used: read it from the job's
    input folder, where that release moved the study, so late instances are still joined to it
    (and a lost part noticed) instead of being segmented alone."""
    for job in queue.without_inputs():
        for folder in (layout.job(job.id) / "input", layout.quarantine / str(job.id) / "input"):
            if folder.is_dir():
                queue.set_inputs(job.id, instances_in(folder))
                log.info("job %d: inputs recorded from %s (a job of an earlier release)", job.id, folder)
                break


def make_telemetry(config: NodeConfig, queue: JobQueue, model: ModelInfo, disk: DiskGuard) -> Telemetry:
    """Metrics for a node with a web service, alerts for one with a webhook."""
    metrics = None
    if config.http is not None:
        from .metrics import NodeMetrics  # prometheus_client: only for a node that serves /metrics

        metrics = NodeMetrics(model, queue.counts, disk.measure, config.min_free_gb, config.min_free_fraction)
    alerts = None
    if config.notify_url is not None:
        notifier = Notifier(
            config.notify_url,
            node=config.ae_title,
            on_result=(lambda result: metrics.notifications.labels(result).inc()) if metrics else (lambda result: None),
        )
        alerts = Alerts(notifier, config.notify_unreachable_s)
    return Telemetry(metrics, alerts, disk, str(config.destination))


class NodeService:
    def __init__(
        self,
        config: NodeConfig,
        predictor: Predictor,
        model: ModelInfo,
        sender: Sender = send_files,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.layout, self.clock = config, Layout(config.storage), clock
        for folder in (self.layout.incoming, self.layout.jobs, self.layout.quarantine, self.layout.audit):
            folder.mkdir(parents=True, exist_ok=True)
        self.queue = JobQueue(self.layout.database)
        self.model = model
        # below the free-space floor, delivered studies past retention are removed before a
        # sender is refused (the worker, made below, removes them)
        self.disk_guard = DiskGuard.from_config(config, prune=lambda: self.worker.prune())
        self.telemetry = make_telemetry(config, self.queue, model, self.disk_guard)
        self.worker = Worker(
            config,
            self.queue,
            predictor,
            model,
            ssl_context(config.tls, server=False),
            sender,
            clock,
            telemetry=self.telemetry,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.server: NodeServer | None = None
        self.web: WebServer | None = None

    def start(self) -> None:
        """Recover what a previous run left, then listen and work."""
        sweep(self.layout.root)
        record_old_inputs(self.layout, self.queue)
        self.queue.resume(self.clock())
        adopt_orphans(self.layout, self.queue, self.clock())
        receiver = Receiver(self.layout.incoming, self.queue, self.clock, self.telemetry)
        web = self._web() if self.config.http is not None else None  # a port in use stops the start here
        self.telemetry.start()
        self.server = start_scp(
            self.config,
            receiver,
            ssl_context(self.config.tls, server=True),
            disk_guard=self.disk_guard,
            telemetry=self.telemetry,
        )
        self._thread = threading.Thread(target=self.worker.run, args=(self._stop,), name="hanseg-worker")
        self._thread.start()
        if web is not None:
            web.start()
            self.web = web

    def health(self) -> tuple[bool, dict[str, object]]:
        """What ``/healthz`` answers: healthy or not, and each check's sentence."""
        return report(
            {
                "listener": listener_check(
                    self.server.thread if self.server is not None else None, f"{self.config.bind}:{self.config.port}"
                ),
                "worker": worker_check(self._thread, self.telemetry.worker, self.clock()),
                "disk": disk_check(self.disk_guard),
                "queue": queue_check(self.queue),
            }
        )

    def _rewrite_audits(self, job_ids: list[int]) -> None:
        for job_id in job_ids:
            self.worker.write_audit(job_id)

    def _web(self) -> WebServer:
        from .web import WebContext, make_app  # Starlette: only for a node with --http-port

        http = self.config.http
        if http is None or self.telemetry.metrics is None:  # never: _web is called with --http-port only
            raise RuntimeError("the web service needs --http-port")
        context = WebContext(
            storage=self.config.storage,
            queue=self.queue,
            model=self.model,
            recipe=self.worker.recipe,
            destination=str(self.config.destination),
            metrics=self.telemetry.metrics,
            settings=http,
            health=self.health,
            rewrite_audits=self._rewrite_audits,
            clock=self.clock,
        )
        return WebServer(make_app(context), http.bind, http.port)

    def stop(self) -> None:
        """Refuse new associations, then let the job in hand finish (a killed one resumes at start)."""
        if self.web is not None:
            self.web.stop()
            self.web = None
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.telemetry.stop()
        self.queue.close()
        log.info("node stopped")


def serve_until_signalled(service: NodeService) -> None:
    """Start the node and run it until SIGTERM or SIGINT, then stop it (the job in hand first)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    while not stop.wait(1.0):  # a timeout, so the signal handler always gets to run
        pass
    log.info("stop requested: no new associations; finishing the job in hand")
    service.stop()
