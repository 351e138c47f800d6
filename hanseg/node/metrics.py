"""The node's Prometheus metrics (``/metrics``), in a registry of its own per node.

Counters and histograms are kept in memory and start at zero with each start of the node, as
Prometheus expects of a process (``rate()`` and ``increase()`` handle the reset). The numbers
that live in the queue or on the disk (jobs by state, queue depth, free space) are read at
each scrape, so they are right after a restart too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .. import __version__
from .audit import ModelInfo
from .disk import Usage, floor_bytes
from .jobs import DELIVERED, EMPTY, FAILED, READY, RECEIVING, RUNNING, SENDING, SUPERSEDED

#: the states a dashboard and an alert rule name; ``failed`` is shown as ``quarantined``
STATE_NAMES = {
    RECEIVING: "receiving",
    READY: "ready",
    RUNNING: "running",
    SENDING: "sending",
    DELIVERED: "delivered",
    FAILED: "quarantined",
    EMPTY: "empty",
    SUPERSEDED: "superseded",
}
#: a segmentation takes 10 s to a few minutes; a send one second to a minute; a study's way
#: through the node (complete -> delivered) up to hours when the destination is down
SEGMENTATION_BUCKETS = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200)
DELIVERY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
TURNAROUND_BUCKETS = (10, 20, 30, 60, 90, 120, 180, 300, 600, 1800, 3600, 7200, 21600)


class _QueueCollector(Collector):
    """Jobs by state, queue depth and free space, read when Prometheus scrapes."""

    def __init__(
        self,
        counts: Callable[[], dict[str, int]],
        usage: Callable[[], Usage | str],
        min_free_gb: float,
        min_free_fraction: float,
    ) -> None:
        self.counts, self.usage = counts, usage
        self.min_free_gb, self.min_free_fraction = min_free_gb, min_free_fraction

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.counts()
        jobs = GaugeMetricFamily("hanseg_jobs", "Jobs in the queue by state (quarantined: failed)", labels=["state"])
        for status, name in STATE_NAMES.items():
            jobs.add_metric([name], counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "hanseg_queue_depth",
            "Jobs waiting for the worker: complete studies to segment and results to send",
            value=counts.get(READY, 0) + counts.get(RUNNING, 0) + counts.get(SENDING, 0),
        )
        usage = self.usage()
        if isinstance(usage, Usage):  # a storage that cannot be measured has no number (and /healthz says why)
            yield GaugeMetricFamily("hanseg_storage_free_bytes", "Free bytes under --storage", value=usage.free)
            yield GaugeMetricFamily(
                "hanseg_storage_floor_bytes",
                "Free space below which new associations are refused",
                value=floor_bytes(usage.total, self.min_free_gb, self.min_free_fraction),
            )


class NodeMetrics:
    """What the node counts, and the registry ``/metrics`` serves."""

    def __init__(
        self,
        model: ModelInfo,
        counts: Callable[[], dict[str, int]],
        usage: Callable[[], Usage | str],
        min_free_gb: float,
        min_free_fraction: float,
    ) -> None:
        # no *_created series: they double the exposition and no dashboard or alert reads them
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.instances = Counter(
            "hanseg_instances_received", "DICOM instances stored and acknowledged with success", registry=r
        )
        self.associations = Counter(
            "hanseg_associations",
            "Associations requested by senders, by result (accepted/rejected) and reason",
            ["result", "reason"],
            registry=r,
        )
        self.segmentation_seconds = Histogram(
            "hanseg_segmentation_seconds",
            "Seconds from a job's start to its RTSTRUCT and SEG written",
            buckets=SEGMENTATION_BUCKETS,
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "hanseg_delivery_seconds",
            "Seconds of the association that delivered a job's results",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.turnaround_seconds = Histogram(
            "hanseg_turnaround_seconds",
            "Seconds from a study complete (ready) to its results delivered",
            buckets=TURNAROUND_BUCKETS,
            registry=r,
        )
        self.send_failures = Counter("hanseg_send_failures", "Failed attempts to send results", registry=r)
        self.quarantined = Counter("hanseg_quarantined", "Jobs quarantined since the start", registry=r)
        self.notifications = Counter(
            "hanseg_notifications", "Webhook alerts by result (sent/failed/dropped)", ["result"], registry=r
        )
        self.started = Gauge("hanseg_start_time_seconds", "When this node started (Unix time)", registry=r)
        self.started.set(time.time())
        Info("hanseg_model", "The model the node segments with", registry=r).info(
            {"version": model.version, "fingerprint": model.fingerprint, "software_version": __version__}
        )
        r.register(_QueueCollector(counts, usage, min_free_gb, min_free_fraction))
