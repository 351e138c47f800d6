"""The sending side: C-STORE of a job's result files to the destination, one association.

A job is delivered when every file got a success (or warning) status. Anything else raises
:class:`.errors.SendError`; the worker waits ``retry_seconds * 2**attempt`` (capped) and
sends all files again: a PACS answers a repeated SOP instance by replacing or ignoring it.
Files go in the order given (the worker puts the RTSTRUCT last).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.association import Association

from .config import Peer
from .errors import SendError

log = logging.getLogger(__name__)

#: C-STORE statuses that mean the destination has the instance (success, and the B-warnings)
STORED = {0x0000, 0xB000, 0xB006, 0xB007}


def _contexts(paths: list[Path]) -> list[tuple[str, str]]:
    """(SOP class, transfer syntax) of each file, so each is sent exactly as written."""
    found = []
    for path in paths:
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        found.append((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
    return found


def send_files(
    paths: list[Path], peer: Peer, calling_aet: str, ssl_context: ssl.SSLContext | None = None, timeout_s: float = 60.0
) -> None:
    """Send ``paths`` to ``peer``; raises :class:`SendError` unless every one was stored."""
    contexts = _contexts(paths)
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for sop_class, syntax in sorted(set(contexts)):
        ae.add_requested_context(sop_class, syntax)
    tls = None if ssl_context is None else (ssl_context, peer.host)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, tls_args=tls)
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "cannot be reached or did not answer"
        raise SendError(f"destination {peer} {why}")
    try:
        for path in paths:
            _send_one(assoc, path, peer)
    finally:
        assoc.release()
    log.info("sent %d file(s) to %s", len(paths), peer)


def _send_one(assoc: Association, path: Path, peer: Peer) -> None:
    status = assoc.send_c_store(path)
    code = getattr(status, "Status", None)
    if code is None:
        raise SendError(f"destination {peer} did not answer the C-STORE of {path.name} (connection lost)")
    if int(code) not in STORED:
        raise SendError(f"destination {peer} refused {path.name} with status 0x{int(code):04X}")
