"""The receiving side: a pynetdicom storage SCP (C-ECHO, C-STORE of any storage SOP class).

Only the calling AE titles given with ``--allow`` may associate (and, for ``AET@HOST``,
only from that address); the called AE title must be this node's. Any other caller gets an
A-ASSOCIATE-RJ (rejected-permanent, service-user, calling-AE-title-not-recognized). While
the storage is below its free-space floor (:class:`.disk.DiskGuard`), new associations get
an A-ASSOCIATE-RJ (rejected-transient, service-provider, local-limit-exceeded): the sender
keeps its study and tries again later. Every instance is on disk
(:func:`.store.store_instance`) and counted in the queue before the C-STORE is answered
with success; when the disk refuses, the answer is 0xA700 (out of resources) so that the
sender keeps the instance and tries again.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, VerificationPresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.events import EventHandlerType
from pynetdicom.transport import ThreadedAssociationServer

from .config import Allowed, NodeConfig
from .disk import DiskGuard
from .errors import InvalidUidError, StoreError
from .jobs import JobQueue
from .store import store_instance
from .telemetry import Telemetry

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class Refusal:
    """An A-ASSOCIATE-RJ: its result, source and reason codes (PS3.8 9.3.4), and their names."""

    result: int
    source: int
    reason: int
    name: str
    label: str  # the metric's reason label


UNKNOWN_CALLER = Refusal(
    0x01, 0x01, 0x03, "rejected-permanent, service-user, calling-AE-title-not-recognized", "calling_ae_not_allowed"
)
WRONG_CALLED = Refusal(
    0x01, 0x01, 0x07, "rejected-permanent, service-user, called-AE-title-not-recognized", "called_ae_wrong"
)
#: the disk floor: transient (the sender should try again later); the standard reason for a
#: local resource limit is the presentation-related service provider's local-limit-exceeded
LOW_DISK = Refusal(0x02, 0x03, 0x02, "rejected-transient, service-provider, local-limit-exceeded", "disk_low")


def is_allowed(allow: tuple[Allowed, ...], calling_aet: str, address: str) -> bool:
    return any(a.ae_title == calling_aet and a.host in (None, address) for a in allow)


def reject(assoc: Association, refusal: Refusal) -> None:
    """Send the A-ASSOCIATE-RJ and wait until it is on the wire."""
    assoc.acse.send_reject(refusal.result, refusal.source, refusal.reason)
    # send_reject only queues the PDU for the DUL thread, and as soon as the EVT_REQUESTED handler
    # returns pynetdicom closes the connection: the RJ was lost and the sender saw the connection
    # drop (dcmtk: "Peer aborted Association"). kill() waits until the DUL thread has sent it and
    # closed the connection, as pynetdicom does after its own rejections.
    assoc.kill()


def on_requested(
    event: evt.Event, config: NodeConfig, disk_guard: DiskGuard | None, telemetry: Telemetry | None = None
) -> None:
    """Accept or refuse an association from its A-ASSOCIATE-RQ, before any data is exchanged."""
    requestor = event.assoc.requestor
    # the requestor's ae_title is filled in only after negotiation: read the A-ASSOCIATE-RQ itself
    if requestor.primitive is None:  # pynetdicom sets it before it sends EVT_REQUESTED
        raise RuntimeError("association requested without an A-ASSOCIATE-RQ")
    calling = str(requestor.primitive.calling_ae_title).strip()
    called = str(requestor.primitive.called_ae_title).strip()
    caller = f"calling AE {calling!r} from {requestor.address}"
    why: str | None = None
    if not is_allowed(config.allow, calling, requestor.address):
        log.warning("association rejected (%s): %s is not in --allow", UNKNOWN_CALLER.name, caller)
        refusal: Refusal | None = UNKNOWN_CALLER
    elif called != config.ae_title:
        log.warning(
            "association rejected (%s): %s called %r, this node is %r",
            WRONG_CALLED.name,
            caller,
            called,
            config.ae_title,
        )
        refusal = WRONG_CALLED
    elif disk_guard is not None and (why := disk_guard.check()) is not None:
        log.error("association rejected (%s): %s; %s", LOW_DISK.name, caller, why)
        refusal = LOW_DISK
    else:
        refusal = None
    if telemetry is not None:
        telemetry.association(refusal is None, "ok" if refusal is None else refusal.label)
        if disk_guard is not None and refusal in (None, LOW_DISK):  # the guard measured just now
            telemetry.disk_measured(why if refusal is LOW_DISK else None)
    if refusal is not None:
        reject(event.assoc, refusal)


@dataclass(frozen=True)
class Receiver:
    """What the C-STORE handler needs: where to write, what to count with, and the clock."""

    incoming: Path
    queue: JobQueue
    clock: Callable[[], float] = time.time
    telemetry: Telemetry = field(default_factory=Telemetry)

    def on_store(self, event: evt.Event) -> int:
        try:
            ds = event.dataset  # decodes the header only as far as the UIDs are read
            study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        except (AttributeError, ValueError, KeyError) as exc:
            log.error("instance refused: no study, series or SOP instance UID (%s)", exc)
            return CANNOT_UNDERSTAND
        try:
            store_instance(self.incoming, study, series, sop, event.encoded_dataset())
        except InvalidUidError as exc:
            log.error("instance refused: %s", exc)
            return CANNOT_UNDERSTAND
        except StoreError as exc:
            log.error("instance %s of study %s NOT stored, the sender is asked to retry: %s", sop, study, exc)
            return OUT_OF_RESOURCES
        try:
            self.queue.record_arrival(str(study), str(series), self.clock())
        except sqlite3.Error as exc:  # the file is kept: the next start adopts it
            log.error("instance %s stored but not counted (%s): it is picked up at the next start", sop, exc)
            return OUT_OF_RESOURCES
        self.telemetry.instance_received()
        return SUCCESS


def build_ae(config: NodeConfig) -> AE:
    ae = AE(ae_title=config.ae_title)
    # on_requested decides; these are pynetdicom's own checks behind it, because an exception in an
    # EVT_REQUESTED handler (a notification event) is only logged and the negotiation goes on
    ae.require_called_aet = True
    ae.require_calling_aet = [a.ae_title for a in config.allow]
    # C-ECHO, with pynetdicom's default transfer syntaxes; from the presentation context, since the
    # name Verification is made in pynetdicom.sop_class at import time, where no type checker sees it
    for cx in VerificationPresentationContexts:
        if cx.abstract_syntax is not None:  # never: built from the Verification SOP class UID
            ae.add_supported_context(cx.abstract_syntax)
    for cx in AllStoragePresentationContexts:
        if cx.abstract_syntax is None:  # never: pynetdicom builds each of them from a SOP class UID
            continue
        # any transfer syntax: a compressed series is stored and reported by the pipeline
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.maximum_associations = 16
    return ae


#: how long a client has to complete the TLS handshake after it connected
HANDSHAKE_TIMEOUT_S = 30.0


def tls_handshake(context: ssl.SSLContext, sock: socket.socket, address: str) -> ssl.SSLSocket | None:
    """The server side of the TLS handshake, with a time limit; None (logged) when it fails."""
    sock.settimeout(HANDSHAKE_TIMEOUT_S)
    try:
        tls = context.wrap_socket(sock, server_side=True)
    except OSError as exc:  # ssl.SSLError, a timeout, a reset: the connection closes with the socket
        log.warning(
            "TLS connection from %s refused: %s (a sender without TLS, or a certificate not signed by --tls-ca?)",
            address,
            exc,
        )
        return None
    tls.settimeout(None)  # blocking, as pynetdicom leaves an accepted connection: its own timeouts apply
    return tls


class NodeServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, with the TLS handshake moved to the connection's thread.

    pynetdicom does the handshake in ``get_request``, on the one thread that accepts
    connections, without a time limit: one client that connects and sends nothing (a port
    check, a stalled sender) held off every other sender until it went away, and a failed
    handshake was not logged at all."""

    #: the thread that accepts connections (``/healthz`` checks it is alive)
    thread: threading.Thread | None = None

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        if self.socket is None:  # never: socketserver binds before it serves
            raise RuntimeError("the storage SCP has no listening socket")
        client, address = self.socket.accept()
        return client, address

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple[str, int] | str
    ) -> None:
        if self.ssl_context is not None and isinstance(request, socket.socket):
            address = client_address[0] if isinstance(client_address, tuple) else client_address
            tls = tls_handshake(self.ssl_context, request, address)
            if tls is None:
                return
            request = tls
        super().process_request_thread(request, client_address)


def start_scp(
    config: NodeConfig,
    receiver: Receiver,
    ssl_context: ssl.SSLContext | None = None,
    disk_guard: DiskGuard | None = None,
    telemetry: Telemetry | None = None,
) -> NodeServer:
    """Listen on ``--bind:--port`` in background threads; the server (call ``shutdown()`` to stop).
    ``disk_guard`` None: no free-space floor (tests)."""
    ae = build_ae(config)
    handlers: list[EventHandlerType] = [
        (evt.EVT_REQUESTED, on_requested, [config, disk_guard, telemetry]),
        (evt.EVT_C_STORE, receiver.on_store),
        (evt.EVT_C_ECHO, lambda event: SUCCESS),
    ]
    server = ae.make_server(
        (config.bind, config.port), evt_handlers=handlers, ssl_context=ssl_context, server_class=NodeServer
    )
    if not isinstance(server, NodeServer):  # never: server_class decides the class
        raise RuntimeError("pynetdicom made another kind of server")
    # as AE.start_server does: the server's shutdown() takes it off this list again
    ae._servers.append(server)
    server.thread = threading.Thread(target=server.serve_forever, name="hanseg-scp", daemon=True)
    server.thread.start()
    log.info(
        "listening as %s on %s:%d%s; accepting from %s",
        config.ae_title,
        config.bind,
        config.port,
        " (TLS)" if ssl_context else "",
        ", ".join(a.ae_title + (f"@{a.host}" if a.host else "") for a in config.allow),
    )
    return server
