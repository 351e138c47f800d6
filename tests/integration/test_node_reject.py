"""What a real sender sees when the node refuses it: dcmtk's ``echoscu`` and ``storescu``
against the node's storage SCP (in-process, a free port). An A-ASSOCIATE-RJ with its reason,
not a dropped connection ("Peer aborted Association"), and nothing stored. Skipped locally,
failed in CI, when dcmtk is missing."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from dicom_fixtures import SeriesSpec, write_series
from hanseg.node.config import Allowed, NodeConfig, Peer
from hanseg.node.disk import GB, DiskGuard, Usage
from hanseg.node.jobs import JobQueue
from hanseg.node.scp import Receiver, start_scp
from helpers import need_tools

NODE = "HANSEG"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Disk:
    free: int = 50 * GB

    def usage(self, _: Path) -> Usage:
        return Usage(self.free, 100 * GB)


@dataclass(frozen=True)
class Node:
    port: int
    incoming: Path
    disk: Disk

    def stored(self) -> list[Path]:
        return sorted(self.incoming.rglob("*.dcm"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("node")
    config = NodeConfig(NODE, free_port(), root, Peer("DEST", "127.0.0.1", 1), (Allowed("SCANNER"),), bind="127.0.0.1")
    disk, queue = Disk(), JobQueue(root / "jobs.sqlite3")
    guard = DiskGuard(root, 5.0, 0.0, free_space=disk.usage)
    server = start_scp(config, Receiver(root / "incoming", queue), disk_guard=guard)
    yield Node(config.port, root / "incoming", disk)
    server.shutdown()
    queue.close()


@pytest.fixture(scope="module")
def ct_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_series(tmp_path_factory.mktemp("in"), SeriesSpec(n_slices=1))[0]


def dcmtk(tool: str, calling: str, port: int, *files: Path) -> subprocess.CompletedProcess[str]:
    [path] = need_tools(tool)
    args = [path, "-aet", calling, "-aec", NODE, "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


def rejected_as(run: subprocess.CompletedProcess[str]) -> list[str]:
    """dcmtk's lines after "Association Rejected:" (its log goes to stderr or stdout by version)."""
    lines = [line.removeprefix("F: ").strip() for line in (run.stdout + run.stderr).splitlines()]
    assert run.returncode != 0
    assert "Association Rejected:" in lines, "\n".join(lines)
    start = lines.index("Association Rejected:") + 1
    return lines[start : start + 2]


def test_echoscu_from_an_unknown_ae_title_is_rejected(node):
    assert rejected_as(dcmtk("echoscu", "UNKNOWN", node.port)) == [
        "Result: Rejected Permanent, Source: Service User",
        "Reason: Calling AE Title Not Recognized",
    ]


def test_storescu_from_an_unknown_ae_title_is_rejected_and_nothing_stored(node, ct_file):
    before = node.stored()
    assert rejected_as(dcmtk("storescu", "UNKNOWN", node.port, ct_file)) == [
        "Result: Rejected Permanent, Source: Service User",
        "Reason: Calling AE Title Not Recognized",
    ]
    assert node.stored() == before


def test_storescu_below_the_disk_floor_is_told_to_try_later(node, ct_file):
    before = node.stored()
    node.disk.free = 1 * GB
    try:
        reason = rejected_as(dcmtk("storescu", "SCANNER", node.port, ct_file))
    finally:
        node.disk.free = 50 * GB
    assert reason == [
        "Result: Rejected Transient, Source: Service Provider (Presentation Related)",
        "Reason: Local Limit Exceeded",
    ]
    assert node.stored() == before


def test_storescu_from_an_allowed_ae_title_stores(node, ct_file):
    run = dcmtk("storescu", "SCANNER", node.port, ct_file)
    assert run.returncode == 0, run.stdout + run.stderr
    ds = pydicom.dcmread(ct_file)
    assert node.stored() == [node.incoming / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"]
