"""The node's storage SCP in-process on a free port, with a pynetdicom SCU: who is refused,
with which A-ASSOCIATE-RJ codes on the wire, what is logged, and that nothing is stored."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.association import Association

from dicom_fixtures import SeriesSpec, write_series
from hanseg.node.config import Allowed, NodeConfig, Peer
from hanseg.node.disk import GB, DiskGuard, Usage
from hanseg.node.jobs import JobQueue
from hanseg.node.scp import Receiver, start_scp

NODE = "HANSEG"
#: SCANNER from anywhere; REMOTE only from an address the tests never use
ALLOW = (Allowed("SCANNER"), Allowed("REMOTE", "10.0.0.99"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeDisk:
    """Free space as the test sets it; a prune raises it to ``after_prune``. Counts the prunes."""

    def __init__(self) -> None:
        self.set(free=50 * GB, after_prune=50 * GB)

    def set(self, free: int, after_prune: int) -> None:
        self.free, self.after_prune, self.prunes = free, after_prune, 0

    def usage(self, _: Path) -> Usage:
        return Usage(self.free, 100 * GB)

    def prune(self) -> None:
        self.prunes += 1
        self.free = self.after_prune


@dataclass(frozen=True)
class Node:
    config: NodeConfig
    disk: FakeDisk
    incoming: Path

    def stored(self) -> list[Path]:
        return sorted(self.incoming.rglob("*.dcm"))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """One SCP for the module (stopping one takes half a second): floor 5 GB, on a FakeDisk."""
    root = tmp_path_factory.mktemp("node")
    config = NodeConfig(NODE, free_port(), root, Peer("DEST", "127.0.0.1", 1), ALLOW, bind="127.0.0.1")
    disk, queue = FakeDisk(), JobQueue(root / "jobs.sqlite3")
    guard = DiskGuard(root, 5.0, 0.0, disk.prune, disk.usage)
    server = start_scp(config, Receiver(root / "incoming", queue), disk_guard=guard)
    yield Node(config, disk, root / "incoming")
    server.shutdown()
    queue.close()


@pytest.fixture
def node(running: Node) -> Node:
    running.disk.set(free=50 * GB, after_prune=50 * GB)
    return running


@pytest.fixture
def ct_file(tmp_path: Path) -> Path:
    return write_series(tmp_path / "in", SeriesSpec(n_slices=1))[0]


def associate(port: int, calling: str = "SCANNER", called: str = NODE) -> Association:
    ae = AE(ae_title=calling)
    ae.add_requested_context(pydicom.uid.CTImageStorage)
    ae.acse_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title=called)


def rejection(assoc: Association) -> tuple[int, int, int]:
    """(result, source, reason) of the A-ASSOCIATE-RJ the SCU received."""
    assert assoc.is_rejected, "the association was not rejected with an A-ASSOCIATE-RJ (aborted or accepted)"
    assert not assoc.is_aborted
    rsp = assoc.acceptor.primitive
    assert rsp is not None
    result, source, reason = rsp.result, rsp.result_source, rsp.diagnostic
    assert result is not None and source is not None and reason is not None
    return (result, source, reason)


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hanseg.node.scp" and "association rejected" in r.getMessage()]


def test_an_unknown_calling_ae_gets_a_permanent_rejection_logged_once(node, caplog):
    before = node.stored()
    assoc = associate(node.config.port, calling="UNKNOWN")
    # rejected-permanent (1), service-user (1), calling-AE-title-not-recognized (3)
    assert rejection(assoc) == (0x01, 0x01, 0x03)
    [record] = refusals(caplog)
    assert record.levelno == logging.WARNING
    assert (
        "'UNKNOWN' from 127.0.0.1" in record.getMessage() and "calling-AE-title-not-recognized" in record.getMessage()
    )
    assert node.stored() == before
    assert node.disk.prunes == 0  # an unknown caller does not make the node clean up


def test_an_allowed_title_from_another_address_is_rejected_as_unknown(node):
    assert rejection(associate(node.config.port, calling="REMOTE")) == (0x01, 0x01, 0x03)


def test_calling_another_ae_title_is_rejected(node, caplog):
    # rejected-permanent, service-user, called-AE-title-not-recognized (7)
    assert rejection(associate(node.config.port, called="OTHER")) == (0x01, 0x01, 0x07)
    assert "called 'OTHER', this node is 'HANSEG'" in refusals(caplog)[0].getMessage()


def test_below_the_disk_floor_associations_get_a_transient_rejection(node, caplog):
    node.disk.set(free=2 * GB, after_prune=3 * GB)
    before = node.stored()
    # rejected-transient (2), service-provider presentation related (3), local-limit-exceeded (2)
    assert rejection(associate(node.config.port)) == (0x02, 0x03, 0x02)
    assert node.disk.prunes == 1
    [record] = refusals(caplog)
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "'SCANNER' from 127.0.0.1" in message and "only 3.00 GB free" in message and "floor of 5.00 GB" in message
    assert node.stored() == before


def test_an_allowed_caller_stores_when_the_prune_freed_enough(node, ct_file):
    node.disk.set(free=2 * GB, after_prune=6 * GB)
    assoc = associate(node.config.port)
    assert assoc.is_established
    try:
        assert int(assoc.send_c_store(pydicom.dcmread(ct_file)).Status) == 0x0000
    finally:
        assoc.release()
    assert node.disk.prunes == 1
    ds = pydicom.dcmread(ct_file)
    assert node.incoming / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm" in node.stored()
