"""Alerts to a webhook (``--notify-url``): a job quarantined, the disk below its floor, the
destination refusing every attempt for ``--notify-unreachable-minutes``.

Each alert is one POST of a small JSON object. Its ``text`` is a sentence a person reads, which
Slack and Microsoft Teams incoming webhooks show as the message; the other fields (``event``,
``node``, ``job_id``, ``study_uid``, ...) are for scripts. UIDs only, never a patient's name.

The worker never waits for the webhook: alerts go into a bounded queue that one thread sends,
each tried :data:`ATTEMPTS` times with a growing pause, and logged when they fail. When the
queue is full (a webhook down for a long time) the oldest alert is dropped, with a log line.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)

ATTEMPTS = 3
FIRST_PAUSE_S = 2.0  # then 4 s: a webhook that is down for a minute loses the alert, and the log keeps it
TIMEOUT_S = 10.0
QUEUE_SIZE = 100

Post = Callable[[str, bytes, float], None]


def post_json(url: str, body: bytes, timeout: float) -> None:
    """POST ``body`` as JSON; raises OSError (urllib.error.URLError, HTTPError) when not 2xx."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


@dataclass
class Notifier:
    """Sends alerts from a thread of its own; :meth:`notify` never blocks."""

    url: str
    node: str
    post: Post = post_json
    pause_s: float = FIRST_PAUSE_S
    timeout_s: float = TIMEOUT_S
    on_result: Callable[[str], None] = lambda result: None  # "sent", "failed", "dropped" (metrics)
    _queue: queue.Queue[dict[str, Any] | None] = field(default_factory=lambda: queue.Queue(QUEUE_SIZE), init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hanseg-notify", daemon=True)
        self._thread.start()

    def stop(self, seconds: float = 5.0) -> None:
        """Send what is queued (for at most ``seconds``), then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(seconds)
            self._thread = None

    def notify(self, event: str, text: str, **fields: Any) -> None:
        payload = {
            "text": f"[{self.node}] {text}",
            "event": event,
            "node": self.node,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **fields,
        }
        while True:
            try:
                self._queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    dropped = self._queue.get_nowait()
                except queue.Empty:
                    continue
                if dropped is not None:
                    log.error("alert dropped, the webhook queue is full: %s", dropped["text"])
                    self.on_result("dropped")

    def _run(self) -> None:
        while (payload := self._queue.get()) is not None:
            self._send(payload)

    def _send(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self.post(self.url, body, self.timeout_s)
            except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
                if attempt == ATTEMPTS:
                    log.error(
                        "alert not delivered to %s after %d attempts (%s): %s", self.url, attempt, exc, payload["text"]
                    )
                    self.on_result("failed")
                    return
                log.warning("alert to %s failed (%s); attempt %d of %d", self.url, exc, attempt, ATTEMPTS)
                time.sleep(self.pause_s * 2 ** (attempt - 1))
            else:
                log.info("alert sent to %s: %s", self.url, payload["event"])
                self.on_result("sent")
                return


class Alerts:
    """When to alert. Disk and destination alerts fire once when the trouble starts and once
    when it ends, not at every check."""

    def __init__(self, notifier: Notifier | None, unreachable_s: float) -> None:
        self.notifier, self.unreachable_s = notifier, unreachable_s
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._unreachable_told = False
        self._disk_low = False

    def _tell(self, event: str, text: str, **fields: Any) -> None:
        if self.notifier is not None:
            self.notifier.notify(event, text, **fields)

    def quarantined(self, job_id: int, study_uid: str, reason: str, what_to_do: str) -> None:
        self._tell(
            "job_quarantined",
            f"job {job_id} (study {study_uid}) quarantined: {reason}",
            job_id=job_id,
            study_uid=study_uid,
            reason=reason,
            what_to_do=what_to_do,
        )

    def send_result(self, ok: bool, now: float, destination: str, message: str = "") -> None:
        """After each attempt to send: an alert once every attempt has failed for ``unreachable_s``."""
        with self._lock:
            if ok:
                if self._unreachable_told:
                    self._tell("destination_reachable", f"{destination} accepts results again", destination=destination)
                self._failing_since, self._unreachable_told = None, False
                return
            if self._failing_since is None:
                self._failing_since = now
            if not self._unreachable_told and now - self._failing_since >= self.unreachable_s:
                self._unreachable_told = True
                minutes = (now - self._failing_since) / 60
                self._tell(
                    "destination_unreachable",
                    f"{destination} has refused every attempt for {minutes:.0f} min: {message}",
                    destination=destination,
                    minutes=round(minutes, 1),
                    reason=message,
                )

    def disk(self, shortfall: str | None) -> None:
        """After each free-space measurement: ``shortfall`` is why it is below the floor, or None."""
        with self._lock:
            if shortfall is not None and not self._disk_low:
                self._tell("disk_low", f"new studies are refused: {shortfall}", reason=shortfall)
            elif shortfall is None and self._disk_low:
                self._tell("disk_ok", "free space is above the floor again: studies are accepted")
            self._disk_low = shortfall is not None
