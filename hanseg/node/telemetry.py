"""Where the node's parts report what happens: metrics (:mod:`.metrics`), alerts
(:mod:`.notify`) and the worker's heartbeat that ``/healthz`` reads. A default
:class:`Telemetry` counts nothing and alerts no one (a node without ``--http-port`` or
``--notify-url``, and the tests that build parts alone)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prometheus_client is imported only by a node that serves /metrics
    from .disk import DiskGuard
    from .metrics import NodeMetrics
    from .notify import Alerts

#: how often the worker measures the free space for the disk alert (an association measures it too)
DISK_CHECK_S = 30.0


@dataclass(frozen=True)
class WorkerState:
    """The worker's last sign of life, and the job in hand (None: idle)."""

    heartbeat: float | None = None
    job_id: int | None = None
    job_since: float | None = None


class Telemetry:
    def __init__(
        self,
        metrics: NodeMetrics | None = None,
        alerts: Alerts | None = None,
        disk: DiskGuard | None = None,
        destination: str = "",
    ) -> None:
        self.metrics, self.alerts, self.disk, self.destination = metrics, alerts, disk, destination
        self._lock = threading.Lock()
        self._worker = WorkerState()
        self._disk_checked_at: float | None = None

    def start(self) -> None:
        """Start sending alerts (the webhook's thread), if there is a webhook."""
        if self.alerts is not None and self.alerts.notifier is not None:
            self.alerts.notifier.start()

    def stop(self) -> None:
        """Send the alerts still queued (for a few seconds), then stop."""
        if self.alerts is not None and self.alerts.notifier is not None:
            self.alerts.notifier.stop()

    # --- the worker ---------------------------------------------------------------------------

    @property
    def worker(self) -> WorkerState:
        with self._lock:
            return self._worker

    def heartbeat(self, now: float) -> None:
        """The worker's loop came round (between jobs); also measures the disk now and then."""
        with self._lock:
            self._worker = WorkerState(now)
            due = self._disk_checked_at is None or now - self._disk_checked_at >= DISK_CHECK_S
            if due:
                self._disk_checked_at = now
        if due and self.disk is not None:
            self.disk_measured(self.disk.shortfall(self.disk.measure()))

    def working_on(self, job_id: int, now: float) -> None:
        with self._lock:
            self._worker = WorkerState(now, job_id, now)

    # --- events -------------------------------------------------------------------------------

    def instance_received(self) -> None:
        if self.metrics is not None:
            self.metrics.instances.inc()

    def association(self, accepted: bool, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.associations.labels("accepted" if accepted else "rejected", reason).inc()

    def segmented(self, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.segmentation_seconds.observe(seconds)

    def delivered(self, send_seconds: float, turnaround_seconds: float | None, now: float) -> None:
        if self.metrics is not None:
            self.metrics.delivery_seconds.observe(send_seconds)
            if turnaround_seconds is not None:
                self.metrics.turnaround_seconds.observe(turnaround_seconds)
        if self.alerts is not None:
            self.alerts.send_result(True, now, self.destination)

    def send_failed(self, now: float, message: str) -> None:
        if self.metrics is not None:
            self.metrics.send_failures.inc()
        if self.alerts is not None:
            self.alerts.send_result(False, now, self.destination, message)

    def quarantined(self, job_id: int, study_uid: str, reason: str, what_to_do: str) -> None:
        if self.metrics is not None:
            self.metrics.quarantined.inc()
        if self.alerts is not None:
            self.alerts.quarantined(job_id, study_uid, reason, what_to_do)

    def disk_measured(self, shortfall: str | None) -> None:
        if self.alerts is not None:
            self.alerts.disk(shortfall)
