"""How many studies an hour the DICOM node turns into results, and how long one study waits.

    python -m benchmarks.node_throughput --out bench/node_throughput [--studies 3] [--senders 1] \\
        [--stable-seconds 5] [--model model] [--device cpu]

The real node (``python -m hanseg.node``, the shipped model loaded once) receives ``--studies``
PACS-style exports of the shipped test case (``phantoms.dicom_export``: CT, T1, T2, scout and
a reformat; a seed per study gives each its own UIDs) from ``--senders`` concurrent senders
(pynetdicom, one association per study; 1: the studies one after another). The destination
is a pynetdicom storage SCP in this process that notes when each object arrives.

Per study: the seconds from the last instance acknowledged to its RTSTRUCT received
(``latency_s``), split with the node's own queue times (``node.sqlite3``) into the silence
that makes a study complete (``stable_wait_s``: ``--stable-seconds``, a setting, not work)
and the rest (``processing_s``): the wait behind other studies (``queue_s``), the
segmentation with the RTSTRUCT and SEG written (``segment_s``) and the sending (``send_s``). Over the run: studies per hour from
the first instance sent to the last RTSTRUCT received, and the worker's capacity, 3600 / the
mean of ``segment_s + send_s`` (what a steady stream reaches: the silence of one study passes
while another is segmented). Writes ``results.json``, ``results.md`` and the node's log.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import AE, StoragePresentationContexts, evt

from hanseg.node.jobs import DELIVERED, Job, JobQueue
from phantoms.dicom_export import ExportOptions, ExportRecord, export_case

log = logging.getLogger("benchmarks.node_throughput")
ROOT = Path(__file__).resolve().parent.parent
NODE_AET, SENDER_AET, DEST_AET = "HANSEG", "BENCHSCU", "BENCHDEST"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- what is measured (pure) -------------------------------------------------------------


@dataclass
class Sent:
    """One study as its sender saw it (wall clock, as the node's queue times)."""

    study_uid: str
    instances: int
    first_sent: float = 0.0
    last_acknowledged: float = 0.0
    refused: int = 0  # C-STOREs not answered with success


def study_times(sent: Sent, rtstruct_at: float, job: Job, stable_seconds: float) -> dict[str, Any]:
    """The seconds of one study: from its last instance acknowledged to its RTSTRUCT received,
    and that time's parts from the queue of the node (``job``: the job that delivered it).

    The silence is the setting itself, and the wait for the worker (``queue_s``) runs from the
    end of that silence (the last arrival plus the setting) to the job's start."""

    def span(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else round(end - start, 2)

    latency = rtstruct_at - sent.last_acknowledged
    return {
        "study_uid": sent.study_uid,
        "instances": sent.instances,
        "send_study_s": round(sent.last_acknowledged - sent.first_sent, 2),
        "latency_s": round(latency, 2),
        "stable_wait_s": stable_seconds,
        "processing_s": round(latency - stable_seconds, 2),
        "queue_s": span(job.last_arrival + stable_seconds, job.started_at),
        "segment_s": span(job.started_at, job.segmented_at),
        "send_s": span(job.segmented_at, job.delivered_at),
    }


def summary(rows: list[dict[str, Any]], first_sent: float, last_rtstruct: float) -> dict[str, Any]:
    """Studies per hour over the run, the worker's capacity, and the means of the per-study times."""
    wall = last_rtstruct - first_sent
    busy = [r["segment_s"] + r["send_s"] for r in rows if r["segment_s"] is not None and r["send_s"] is not None]

    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return round(statistics.fmean(values), 2) if values else None

    return {
        "studies": len(rows),
        "run_s": round(wall, 1),
        "studies_per_hour": round(len(rows) * 3600 / wall, 1) if wall > 0 else None,
        "worker_capacity_per_hour": round(3600 / statistics.fmean(busy), 1) if busy else None,
        **{f"mean_{key}": mean(key) for key in ("latency_s", "processing_s", "queue_s", "segment_s", "send_s")},
        "max_latency_s": max((r["latency_s"] for r in rows), default=None),
    }


def table(results: dict[str, Any]) -> str:
    keys = ("latency_s", "stable_wait_s", "processing_s", "queue_s", "segment_s", "send_s", "send_study_s")
    lines = [
        "| study | instances | " + " | ".join(keys) + " |",
        "| ---: | ---: | " + " | ".join("---:" for _ in keys) + " |",
    ]
    for n, row in enumerate(results["studies"], start=1):
        lines.append(f"| {n} | {row['instances']} | " + " | ".join(str(row[k]) for k in keys) + " |")
    s = results["summary"]
    lines += [
        "",
        f"{s['studies']} studies from {results['settings']['senders']} sender(s), --stable-seconds "
        f"{results['settings']['stable_seconds']:g}: {s['studies_per_hour']} studies/hour over the run "
        f"({s['run_s']} s, first instance sent to last RTSTRUCT received); worker capacity "
        f"{s['worker_capacity_per_hour']} studies/hour (3600 / mean segment_s + send_s); node start "
        f"{results['node_start_s']} s (model loaded).",
    ]
    return "\n".join(lines)


# --- the parts ---------------------------------------------------------------------------


@dataclass
class Destination:
    """A storage SCP that notes when each object arrives, by study."""

    port: int
    arrivals: list[tuple[float, str, str]] = field(default_factory=list)  # (time, modality, study)

    def start(self) -> Any:
        ae = AE(ae_title=DEST_AET)
        ae.supported_contexts = StoragePresentationContexts
        server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        if server is None:
            raise RuntimeError("the destination SCP did not start")
        return server

    def _store(self, event: evt.Event) -> int:
        ds = event.dataset
        self.arrivals.append((time.time(), str(ds.Modality), str(ds.StudyInstanceUID)))
        return 0x0000

    def first_rtstruct(self, study_uid: str) -> float | None:
        times = [t for t, modality, study in self.arrivals if modality == "RTSTRUCT" and study == study_uid]
        return min(times) if times else None


def study_files(record: ExportRecord) -> list[Path]:
    """Every file of the export, series by series, as a PACS sends a study."""
    return [f for series in record.series for f in series.files]


def send_study(files: list[Path], port: int, sent: Sent) -> None:
    """One association, every file; times in ``sent``."""
    ae = AE(ae_title=SENDER_AET)
    for sop_class, syntax in sorted({_context(f) for f in files}):
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    if not assoc.is_established:
        raise RuntimeError(f"the node refused the association for study {sent.study_uid}")
    try:
        sent.first_sent = time.time()
        for path in files:
            status = assoc.send_c_store(path)
            if int(getattr(status, "Status", -1)) != 0:
                sent.refused += 1
            sent.last_acknowledged = time.time()
    finally:
        assoc.release()


def _context(path: Path) -> tuple[str, str]:
    meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
    return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)


def start_node(args: argparse.Namespace, port: int, dest_port: int, storage: Path, log_path: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "hanseg.node",
        "--ae-title",
        NODE_AET,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--storage",
        str(storage),
        "--destination",
        f"{DEST_AET}@127.0.0.1:{dest_port}",
        "--allow",
        f"{SENDER_AET}@127.0.0.1",
        "--model",
        str(args.model),
        "--device",
        args.device,
        "--stable-seconds",
        str(args.stable_seconds),
        "--retention-hours",
        "0",  # a delivered study's images go at once: N studies need no more disk than one
        "--min-free-gb",
        "0",
        "--min-free-percent",
        "0",
    ]
    with open(log_path, "w") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)


def wait_port(proc: subprocess.Popen, port: int, seconds: float, log_path: Path) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the node exited ({proc.returncode}): see {log_path}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the node did not open port {port} in {seconds:g} s: see {log_path}")


def export_studies(out: Path, n: int) -> list[ExportRecord]:
    folder = out / "studies"
    shutil.rmtree(folder, ignore_errors=True)
    ct, mr = ROOT / "test/images/ct/case_01_CT.mha", ROOT / "test/images/t1-mri/case_01_T1.mha"
    return [
        export_case(ct, mr, folder / f"study-{i + 1}", seed=i + 1, options=ExportOptions(patient_id=f"BENCH{i + 1}"))
        for i in range(n)
    ]


def run_senders(records: list[ExportRecord], senders: int, port: int) -> list[Sent]:
    """``senders`` threads; sender k sends studies k, k + senders, ... one after another."""
    sent = [Sent(r.study_uid, len(study_files(r))) for r in records]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(k, len(records), senders):
                send_study(study_files(records[i]), port, sent[i])
                log.info("study %d sent (%d instances) by sender %d", i + 1, sent[i].instances, k + 1)
        except (RuntimeError, OSError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,), name=f"sender-{k + 1}") for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"a sender failed: {errors[0]}")
    return sent


def wait_results(dest: Destination, sent: list[Sent], node: subprocess.Popen, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if all(dest.first_rtstruct(s.study_uid) is not None for s in sent):
            return
        if node.poll() is not None:
            raise RuntimeError(f"the node exited ({node.returncode}) before every RTSTRUCT arrived")
        time.sleep(0.5)
    raise RuntimeError(f"not every RTSTRUCT arrived within {seconds:g} s")


def delivering_job(jobs: list[Job], study_uid: str) -> Job:
    """The first delivered job of the study (a later one would be a replacement)."""
    delivered = [j for j in jobs if j.study_uid == study_uid and j.status == DELIVERED]
    if not delivered:
        raise RuntimeError(f"the node has no delivered job for study {study_uid}")
    return delivered[0]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    storage = out / "storage"
    shutil.rmtree(storage, ignore_errors=True)
    records = export_studies(out, args.studies)
    node_port, dest = free_port(), Destination(free_port())
    server = dest.start()
    started = time.monotonic()
    node = start_node(args, node_port, dest.port, storage, out / "node.log")
    try:
        wait_port(node, node_port, 600, out / "node.log")
        node_start = round(time.monotonic() - started, 1)
        log.info("node listening after %.1f s; sending %d studies", node_start, len(records))
        sent = run_senders(records, args.senders, node_port)
        wait_results(dest, sent, node, args.timeout)
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            node.wait(600)
        server.shutdown()
    queue = JobQueue(storage / "node.sqlite3")
    jobs = queue.jobs()
    queue.close()
    rows = []
    for s in sent:
        rtstruct_at = dest.first_rtstruct(s.study_uid)
        assert rtstruct_at is not None  # wait_results returned
        rows.append(study_times(s, rtstruct_at, delivering_job(jobs, s.study_uid), args.stable_seconds))
    first_sent = min(s.first_sent for s in sent)
    last = max(t for s in sent if (t := dest.first_rtstruct(s.study_uid)) is not None)
    return {
        "settings": {
            "studies": args.studies,
            "senders": args.senders,
            "stable_seconds": args.stable_seconds,
            "device": args.device,
            "model": str(args.model),
        },
        "node_start_s": node_start,
        "node_exit_code": node.returncode,
        "jobs": len(jobs),  # more than the studies: a study was split (a sender slower than the silence)
        "refused_instances": sum(s.refused for s in sent),
        "studies": rows,
        "summary": summary(rows, first_sent, last),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Studies per hour through the DICOM node, and the wait per study.")
    ap.add_argument("--model", type=Path, default=ROOT / "model")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "node_throughput")
    ap.add_argument("--studies", type=int, default=3, help="how many studies (default 3)")
    ap.add_argument("--senders", type=int, default=1, help="concurrent senders (default 1: one after another)")
    ap.add_argument(
        "--stable-seconds",
        type=float,
        default=5.0,
        help="the node's --stable-seconds (default 5; a site sets about 60): reported apart from the processing",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for every RTSTRUCT")
    args = ap.parse_args(argv)
    if args.studies < 1 or args.senders < 1:
        ap.error("--studies and --senders must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # a line per C-STORE otherwise
    args.out.mkdir(parents=True, exist_ok=True)
    results = measure(args)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(table(results) + "\n")
    log.info("\n%s", table(results))
    return 0 if results["jobs"] == args.studies and results["refused_instances"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
