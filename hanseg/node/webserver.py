"""uvicorn in a thread of the node: started after the DICOM listener, stopped before the
worker. The socket is bound here, so that a port in use stops the node at start with a
message (uvicorn, left to bind it, would end its thread and the node would run without its
dashboard or health probe)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time

from .errors import NodeError

log = logging.getLogger(__name__)


def is_loopback(address: str) -> bool:
    """True for an address only this host can reach (127.0.0.0/8, ::1, localhost)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class WebServer:
    def __init__(self, app: object, bind: str, port: int) -> None:
        import uvicorn  # only a node with --http-port needs it

        self.bind, self.address = bind, f"{bind}:{port}"
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((bind, port))
        except OSError as exc:
            self.sock.close()
            raise NodeError(f"--http-port {port} on {bind}: cannot listen ({exc.strerror or exc})") from exc
        self.sock.listen(64)
        # uvicorn's own access log would print every dashboard refresh; errors still go to the log
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5)  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    def start(self, seconds: float = 10.0) -> None:
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="hanseg-http")
        self.thread.start()
        end = time.monotonic() + seconds
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                raise NodeError(f"the web service on {self.address} did not start (see the log)")
            time.sleep(0.02)
        log.info("dashboard, /metrics, /healthz and /api/jobs on http://%s/", self.address)
        if not is_loopback(self.bind):
            log.warning(
                "the web service listens on %s: its read-only pages (study UIDs, QA pictures of the CT) "
                "need no token, so publish this port only to people who may see them (docs/operations.md)",
                self.address,
            )

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
            self.thread = None
        self.sock.close()
