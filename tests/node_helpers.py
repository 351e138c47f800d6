"""What the DICOM node's tests share: a node in-process with a fast fake predictor on free
ports (the ``node`` fixture is made by :func:`node_factory`), a pynetdicom storage SCP as the
destination, and a pynetdicom sender."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import AE, StoragePresentationContexts, evt

from dicom_fixtures import SeriesSpec
from hanseg.node.audit import ModelInfo
from hanseg.node.config import Allowed, NodeConfig, Peer
from hanseg.node.service import NodeService
from helpers import FakePredictor

CT = SeriesSpec(n_slices=12)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Destination:
    """A storage SCP that keeps what it receives (the PACS or TPS)."""

    def __init__(self, port: int) -> None:
        self.received: list[pydicom.Dataset] = []
        ae = AE(ae_title="DEST")
        ae.supported_contexts = StoragePresentationContexts
        server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        assert server is not None  # block=False: the running server is returned
        self.server = server

    def _store(self, event: evt.Event) -> int:
        self.received.append(event.dataset)
        return 0x0000

    def stop(self) -> None:
        self.server.shutdown()


def send(paths: list[Path], port: int, calling: str = "SCANNER") -> list[int]:
    """C-STORE every file to the node; the statuses, or [] when the association was refused."""
    ae = AE(ae_title=calling)
    for path in paths:
        ae.add_requested_context(pydicom.dcmread(path).SOPClassUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="HANSEG")
    if not assoc.is_established:
        return []
    try:
        return [int(assoc.send_c_store(pydicom.dcmread(p)).Status) for p in paths]
    finally:
        assoc.release()


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def node_factory(tmp_path: Path) -> Iterator[Callable[..., NodeService]]:
    """Start a node with ``node(**config changes)``; all are stopped at the end (use as the
    body of a ``yield from`` fixture)."""
    started: list[NodeService] = []

    def start(**changes: Any) -> NodeService:
        values: dict[str, Any] = {
            "ae_title": "HANSEG",
            "port": free_port(),
            "storage": tmp_path / "storage",
            "destination": Peer("DEST", "127.0.0.1", free_port()),
            "allow": (Allowed("SCANNER", "127.0.0.1"),),
            "bind": "127.0.0.1",
            "stable_seconds": 2.0,  # a loaded CI machine may pause between two C-STOREs
            "retries": 2,
            "retry_seconds": 0.2,
            "retention_hours": 0,
            "poll_seconds": 0.1,
            # the free-space guard runs, with a floor any test machine has
            "min_free_gb": 0.1,
            "min_free_fraction": 0.0,
        }
        values.update(changes)
        model = ModelInfo("fake", {"fold_0.pt": "ab" * 32}, "fake-fingerprint")
        service = NodeService(NodeConfig(**values), FakePredictor(), model)
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


class Webhook:
    """A local webhook receiver (the node's ``--notify-url``) that keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass  # the test's output, not the receiver's access log

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
