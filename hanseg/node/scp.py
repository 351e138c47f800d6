"""The receiving side: a pynetdicom storage SCP (C-ECHO, C-STORE of any storage SOP class).

Only the calling AE titles given with ``--allow`` may associate (and, for ``AET@HOST``,
only from that address); the called AE title must be this node's. Every instance is on disk
(:func:`.store.store_instance`) and counted in the queue before the C-STORE is answered
with success; when the disk refuses, the answer is 0xA700 (out of resources) so that the
sender keeps the instance and tries again.
"""

from __future__ import annotations

import logging
import sqlite3
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, VerificationPresentationContexts, evt
from pynetdicom.events import EventHandlerType
from pynetdicom.transport import ThreadedAssociationServer

from .config import Allowed, NodeConfig
from .errors import InvalidUidError, StoreError
from .jobs import JobQueue
from .store import store_instance

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
#: A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognised
REJECT_PERMANENT, SOURCE_USER, CALLING_AE_UNKNOWN = 0x01, 0x01, 0x03


def is_allowed(allow: tuple[Allowed, ...], calling_aet: str, address: str) -> bool:
    return any(a.ae_title == calling_aet and a.host in (None, address) for a in allow)


def _on_requested(event: evt.Event, allow: tuple[Allowed, ...]) -> None:
    """Refuse an association before any data is exchanged unless its caller is allowed."""
    requestor = event.assoc.requestor
    # the requestor's ae_title is filled in only after negotiation: read the A-ASSOCIATE-RQ itself
    if requestor.primitive is None:  # pynetdicom sets it before it sends EVT_REQUESTED
        raise RuntimeError("association requested without an A-ASSOCIATE-RQ")
    calling = str(requestor.primitive.calling_ae_title).strip()
    if not is_allowed(allow, calling, requestor.address):
        log.warning("association refused: calling AE %r from %s is not in --allow", calling, requestor.address)
        event.assoc.acse.send_reject(REJECT_PERMANENT, SOURCE_USER, CALLING_AE_UNKNOWN)


@dataclass(frozen=True)
class Receiver:
    """What the C-STORE handler needs: where to write, what to count with, and the clock."""

    incoming: Path
    queue: JobQueue
    clock: Callable[[], float] = time.time

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
        return SUCCESS


def build_ae(config: NodeConfig) -> AE:
    ae = AE(ae_title=config.ae_title)
    ae.require_called_aet = True  # a sender that calls another AE title reached the wrong node
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


def start_scp(
    config: NodeConfig, receiver: Receiver, ssl_context: ssl.SSLContext | None = None
) -> ThreadedAssociationServer:
    """Listen on ``--bind:--port`` in background threads; the server (call ``shutdown()`` to stop)."""
    ae = build_ae(config)
    handlers: list[EventHandlerType] = [
        (evt.EVT_REQUESTED, _on_requested, [config.allow]),
        (evt.EVT_C_STORE, receiver.on_store),
        (evt.EVT_C_ECHO, lambda event: SUCCESS),
    ]
    server = ae.start_server((config.bind, config.port), block=False, evt_handlers=handlers, ssl_context=ssl_context)
    if server is None:  # start_server returns None only when it blocks until the server stops
        raise RuntimeError("the storage SCP did not start in the background")
    log.info(
        "listening as %s on %s:%d%s; accepting from %s",
        config.ae_title,
        config.bind,
        config.port,
        " (TLS)" if ssl_context else "",
        ", ".join(a.ae_title + (f"@{a.host}" if a.host else "") for a in config.allow),
    )
    return server
