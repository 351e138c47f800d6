"""TLS on both sides of the node, with the contexts ``--tls-cert/--tls-key/--tls-ca`` make
(:func:`hanseg.node.service.ssl_context`): a CA and its certificates made here with the
``openssl`` CLI; the node's SCP in-process on a free port; senders with pynetdicom and with
dcmtk's ``storescu +tls``; the node's own sending (``send_files``) to a TLS destination.
Skipped locally, failed in CI, when openssl or dcmtk is missing."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.association import Association

from dicom_fixtures import SeriesSpec, write_series
from hanseg.node.config import Allowed, NodeConfig, Peer, TlsFiles
from hanseg.node.errors import SendError
from hanseg.node.jobs import JobQueue
from hanseg.node.scp import Receiver, start_scp
from hanseg.node.send import send_files
from hanseg.node.service import ssl_context
from helpers import need_tools

NODE = "HANSEG"
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Pki:
    folder: Path

    def files(self, name: str, ca: str | None = "ca") -> TlsFiles:
        """``name``'s certificate and key, trusting ``ca`` (None: no --tls-ca)."""
        trusted = None if ca is None else self.folder / f"{ca}.pem"
        return TlsFiles(self.folder / f"{name}.pem", self.folder / f"{name}.key", trusted)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA; node, scanner and pacs certificates signed by it (for 127.0.0.1); and a
    self-signed stranger. EC keys: RSA key generation would take a second."""
    [openssl] = need_tools("openssl")
    folder = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True, timeout=30)

    ca = ("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA", *ca)
    leaf = "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
    (folder / "leaf.ext").write_text(leaf)
    for serial, name in enumerate(("node", "scanner", "pacs"), start=1):
        run("req", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        sign = ("-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", str(serial), "-extfile", "leaf.ext")
        run("x509", "-req", "-in", f"{name}.csr", *sign, "-days", "2", "-out", f"{name}.pem")
    stranger = ("-subj", "/CN=stranger", "-addext", "subjectAltName=IP:127.0.0.1")
    run("req", "-x509", *EC_KEY, "-keyout", "stranger.key", "-out", "stranger.pem", "-days", "2", *stranger)
    return Pki(folder)


@dataclass(frozen=True)
class Node:
    port: int
    incoming: Path

    def stored(self) -> list[Path]:
        return sorted(self.incoming.rglob("*.dcm"))


@pytest.fixture(scope="module")
def node(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """The node's SCP with --tls-cert node.pem --tls-key node.key --tls-ca ca.pem."""
    root = tmp_path_factory.mktemp("node")
    config = NodeConfig(NODE, free_port(), root, Peer("DEST", "127.0.0.1", 1), (Allowed("SCANNER"),), bind="127.0.0.1")
    queue = JobQueue(root / "jobs.sqlite3")
    server = start_scp(config, Receiver(root / "incoming", queue), ssl_context(pki.files("node"), server=True))
    yield Node(config.port, root / "incoming")
    server.shutdown()
    queue.close()


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_series(tmp_path_factory.mktemp("in"), SeriesSpec(n_slices=2))


def associate(port: int, tls: TlsFiles | None) -> Association:
    """A scanner's association to the node; TLS with the node's own client-side context."""
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(pydicom.uid.CTImageStorage)
    # connection_timeout also bounds the TLS handshake: a node that never answers fails the test, not hangs it
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 10
    context = ssl_context(tls, server=False)
    return ae.associate("127.0.0.1", port, ae_title=NODE, tls_args=None if context is None else (context, "127.0.0.1"))


def logged(caplog: pytest.LogCaptureFixture, text: str, seconds: float = 5.0) -> bool:
    """Whether ``text`` is logged within ``seconds`` (the server logs from its own threads)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if text in caplog.text:
            return True
        time.sleep(0.05)
    return False


def test_a_tls_sender_with_a_certificate_from_the_ca_stores(node, pki, ct_files):
    assoc = associate(node.port, pki.files("scanner"))
    assert assoc.is_established
    try:
        assert [int(assoc.send_c_store(pydicom.dcmread(f)).Status) for f in ct_files] == [0x0000, 0x0000]
    finally:
        assoc.release()
    sops = {pydicom.dcmread(f).SOPInstanceUID for f in ct_files}
    assert sops <= {p.stem for p in node.stored()}


def test_a_sender_without_tls_is_refused_and_logged(node, caplog):
    before = node.stored()
    caplog.set_level(logging.WARNING, logger="hanseg.node.scp")
    assoc = associate(node.port, None)
    assert not assoc.is_established
    assert logged(caplog, "TLS connection from 127.0.0.1 refused")
    assert node.stored() == before


def test_a_sender_whose_certificate_is_not_from_the_ca_is_refused(node, pki):
    assert not associate(node.port, pki.files("stranger")).is_established


def test_a_client_that_connects_and_says_nothing_does_not_hold_off_the_others(node, pki):
    with socket.create_connection(("127.0.0.1", node.port)):  # no TLS handshake from this one
        assoc = associate(node.port, pki.files("scanner"))
        assert assoc.is_established
        assoc.release()


def test_dcmtk_storescu_over_tls_stores(node, pki, ct_files):
    [storescu] = need_tools("storescu")
    scanner = pki.files("scanner")
    tls = ["+tls", str(scanner.key), str(scanner.cert), "+cf", str(pki.folder / "ca.pem")]
    args = [storescu, *tls, "-aet", "SCANNER", "-aec", NODE, "127.0.0.1", str(node.port), str(ct_files[0])]
    run = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert pydicom.dcmread(ct_files[0]).SOPInstanceUID in {p.stem for p in node.stored()}


class Destination:
    """A TLS storage SCP (the PACS), with pynetdicom's own TLS handling; keeps the SOP instance UIDs."""

    def __init__(self, tls: TlsFiles) -> None:
        self.port = free_port()
        self.received: list[str] = []
        ae = AE(ae_title="DEST")
        ae.supported_contexts = StoragePresentationContexts
        server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self.store)],
            ssl_context=ssl_context(tls, server=True),
        )
        assert server is not None  # block=False: the running server is returned
        self.server = server

    def store(self, event: evt.Event) -> int:
        self.received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000


@pytest.fixture(scope="module")
def destination(pki: Pki) -> Iterator[Destination]:
    dest = Destination(pki.files("pacs"))
    yield dest
    dest.server.shutdown()


def test_send_files_to_a_tls_destination(destination, pki, ct_files):
    peer = Peer("DEST", "127.0.0.1", destination.port)
    send_files(ct_files, peer, NODE, ssl_context(pki.files("node"), server=False), timeout_s=10)
    assert destination.received[-2:] == [pydicom.dcmread(f).SOPInstanceUID for f in ct_files]


def test_send_files_refuses_a_destination_whose_certificate_is_not_from_the_ca(destination, pki, ct_files):
    before = list(destination.received)
    peer = Peer("DEST", "127.0.0.1", destination.port)
    with pytest.raises(SendError, match=r"DEST@127\.0\.0\.1"):
        send_files(ct_files, peer, NODE, ssl_context(pki.files("node", ca="stranger"), server=False), timeout_s=10)
    assert destination.received == before
