"""The node's operation parts on their own: the web settings and tokens, the alert rules, the
webhook sender's retries and bounded queue, the health checks, and the token check."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import pytest

from hanseg.node.config import TOKEN_ENV, config_from_args, read_tokens
from hanseg.node.disk import DiskGuard, Usage
from hanseg.node.errors import NodeError
from hanseg.node.health import JOB_LIMIT_S, WORKER_SILENT_S, disk_check, report, worker_check
from hanseg.node.notify import ATTEMPTS, QUEUE_SIZE, Alerts, Notifier
from hanseg.node.telemetry import WorkerState
from hanseg.node.web import authenticate

BASE = [
    "--ae-title",
    "HANSEG",
    "--port",
    "11112",
    "--storage",
    "/tmp/s",
    "--destination",
    "TPS@h:104",
    "--allow",
    "SCANNER",
]


# --- settings ------------------------------------------------------------------------------------


def test_the_web_service_is_off_by_default_and_local_when_on():
    assert config_from_args(BASE, {}).http is None
    http = config_from_args([*BASE, "--http-port", "8080"], {}).http
    assert http is not None and (http.port, http.bind, http.tokens, http.show_accession) == (
        8080,
        "127.0.0.1",
        (),
        False,
    )


def test_tokens_come_from_a_file_the_environment_or_the_flag(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# who may act\nalice:aaaaaaaaaaaaaaaa\n  bbbbbbbbbbbbbbbb  \n")
    found = read_tokens(tokens, {TOKEN_ENV: "cccccccccccccccc"}, "dddddddddddddddd")
    assert found == (
        ("alice", "aaaaaaaaaaaaaaaa"),
        ("operator", "bbbbbbbbbbbbbbbb"),
        ("operator", "cccccccccccccccc"),
        ("operator", "dddddddddddddddd"),
    )
    assert read_tokens(None, {}) == ()


@pytest.mark.parametrize(
    ("content", "message"),
    [("alice:short\n", "line 1: write USER:TOKEN"), ("# nothing\n", "holds no token"), (":aaaaaaaaaaaaaaaa", "line 1")],
)
def test_a_bad_token_file_is_refused_naming_the_line(tmp_path, content, message):
    path = tmp_path / "tokens"
    path.write_text(content)
    with pytest.raises(NodeError, match=message):
        read_tokens(path, {})


@pytest.mark.parametrize(
    ("extra", "environ", "message"),
    [
        (["--http-token-file", "/x"], {}, "need --http-port"),
        (["--show-accession"], {}, "need --http-port"),
        (["--http-port", "11112"], {}, "is the DICOM --port"),
        (["--http-port", "0"], {}, "not a TCP port"),
        (["--http-port", "8080"], {TOKEN_ENV: "short"}, "at least 12"),
        (["--http-port", "8080", "--http-token-file", "/nonexistent/tokens"], {}, "cannot be read"),
        (["--notify-url", "hooks.example.org/x"], {}, "http:// or https://"),
        (["--notify-unreachable-minutes", "0"], {}, "above 0"),
    ],
)
def test_bad_web_and_alert_settings_stop_the_start_with_the_reason(extra, environ, message):
    with pytest.raises(NodeError, match=message):
        config_from_args([*BASE, *extra], environ)


# --- the token check -----------------------------------------------------------------------------

TOKENS = (("alice", "aaaaaaaaaaaaaaaa"), ("bob", "bbbbbbbbbbbbbbbb"))


def basic(user: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def test_a_token_names_its_user_and_anything_else_names_nobody():
    assert authenticate("Bearer bbbbbbbbbbbbbbbb", TOKENS) == "bob"
    assert authenticate(basic("alice", "aaaaaaaaaaaaaaaa"), TOKENS) == "alice"
    assert authenticate(basic("bob", "aaaaaaaaaaaaaaaa"), TOKENS) is None  # alice's token under bob's name
    for header in ("", "Bearer", "Bearer aaaa", "Token aaaaaaaaaaaaaaaa", "Basic !!!", "bearer  "):
        assert authenticate(header, TOKENS) is None
    assert authenticate("Bearer aaaaaaaaaaaaaaaa", ()) is None


# --- alerts --------------------------------------------------------------------------------------


class Told:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def notify(self, event: str, text: str, **fields: object) -> None:
        self.events.append((event, text, fields))


def alerts(unreachable_s: float = 600) -> tuple[Alerts, Told]:
    told = Told()
    return Alerts(told, unreachable_s), told  # type: ignore[arg-type]  # a stand-in for the Notifier


def test_an_unreachable_destination_is_told_once_after_the_wait_and_once_when_it_is_back():
    rules, told = alerts(600)
    for t in (0, 60, 599):
        rules.send_result(False, 1000 + t, "TPS@h:104", "refused")
    assert told.events == []
    rules.send_result(False, 1600, "TPS@h:104", "refused")
    rules.send_result(False, 2000, "TPS@h:104", "refused")
    assert [e for e, _, _ in told.events] == ["destination_unreachable"]
    assert "10 min" in told.events[0][1] and told.events[0][2]["destination"] == "TPS@h:104"
    rules.send_result(True, 2100, "TPS@h:104")
    rules.send_result(True, 2200, "TPS@h:104")
    assert [e for e, _, _ in told.events] == ["destination_unreachable", "destination_reachable"]
    rules.send_result(False, 3000, "TPS@h:104", "refused")  # the wait starts again
    assert len(told.events) == 2


def test_a_success_in_between_restarts_the_unreachable_wait():
    rules, told = alerts(600)
    rules.send_result(False, 0, "D")
    rules.send_result(True, 500, "D")
    rules.send_result(False, 700, "D")
    rules.send_result(False, 1200, "D")
    assert told.events == []


def test_the_disk_is_told_when_it_falls_below_the_floor_and_when_it_is_above_again():
    rules, told = alerts()
    for shortfall in (None, "only 1 GB free", "only 0.5 GB free", None, None):
        rules.disk(shortfall)
    assert [e for e, _, _ in told.events] == ["disk_low", "disk_ok"]
    assert "only 1 GB free" in told.events[0][1]


def test_a_quarantine_is_told_with_the_job_study_reason_and_what_to_do():
    rules, told = alerts()
    rules.quarantined(7, "1.2.3", "not delivered after 5 attempt(s)", "run retry 7")
    ((event, text, fields),) = told.events
    assert event == "job_quarantined" and "job 7" in text and "1.2.3" in text
    assert fields == {"job_id": 7, "study_uid": "1.2.3", "reason": "not delivered after 5 attempt(s)", "what_to_do": "run retry 7"}  # fmt: skip


# --- the webhook sender --------------------------------------------------------------------------


def test_the_webhook_is_retried_then_given_up_and_notify_never_waits():
    calls: list[bytes] = []
    results: list[str] = []
    gate = threading.Event()

    def post(url: str, body: bytes, timeout: float) -> None:
        gate.wait(5)
        calls.append(body)
        raise OSError("connection refused")

    notifier = Notifier("http://hook", "HANSEG", post=post, pause_s=0.01, on_result=results.append)
    notifier.start()
    started = time.monotonic()
    notifier.notify("job_quarantined", "job 1 quarantined", job_id=1)
    assert time.monotonic() - started < 0.1  # the caller (the worker) went on at once
    gate.set()
    notifier.stop()
    assert len(calls) == ATTEMPTS and results == ["failed"]
    assert b'"text": "[HANSEG] job 1 quarantined"' in calls[0] and b'"job_id": 1' in calls[0]


def test_a_full_queue_drops_the_oldest_alert():
    results: list[str] = []
    notifier = Notifier("http://hook", "N", post=lambda *a: None, on_result=results.append)  # not started
    for i in range(QUEUE_SIZE + 3):
        notifier.notify("e", f"alert {i}")
    assert results == ["dropped"] * 3
    sent: list[bytes] = []
    notifier.post = lambda url, body, timeout: sent.append(body)
    notifier.start()
    notifier.stop()
    assert len(sent) == QUEUE_SIZE and b"alert 3" in sent[0]


# --- health --------------------------------------------------------------------------------------


def alive() -> threading.Thread:
    thread = threading.Thread(target=time.sleep, args=(5,), daemon=True)
    thread.start()
    return thread


def test_the_worker_is_healthy_idle_or_busy_and_failing_when_it_hangs_or_died():
    thread, now = alive(), 10_000.0
    assert worker_check(thread, WorkerState(now - 1), now).ok
    assert worker_check(thread, WorkerState(None), now).ok  # starting
    assert worker_check(thread, WorkerState(now - 300, 4, now - 300), now).ok  # a long segmentation
    silent = worker_check(thread, WorkerState(now - WORKER_SILENT_S - 1), now)
    assert not silent.ok and "has not come round" in silent.detail
    stuck = worker_check(thread, WorkerState(now - JOB_LIMIT_S - 60, 4, now - JOB_LIMIT_S - 60), now)
    assert not stuck.ok and "job 4" in stuck.detail
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    assert not worker_check(dead, WorkerState(now), now).ok


def test_the_disk_check_fails_below_the_floor_and_when_the_storage_cannot_be_measured(tmp_path: Path):
    def usage(free: int):
        return lambda path: Usage(free, 100 * 10**9)

    # the floor: the larger of 5 GB and 10 % of 100 GB
    assert disk_check(DiskGuard(tmp_path, 5, 0.1, free_space=usage(11 * 10**9))).ok
    low = disk_check(DiskGuard(tmp_path, 5, 0.1, free_space=usage(9 * 10**9)))
    assert not low.ok and "below the floor" in low.detail and "refused" in low.detail

    def unmounted(path: Path) -> Usage:
        raise OSError(5, "Input/output error")

    assert not disk_check(DiskGuard(tmp_path, free_space=unmounted)).ok


def test_the_report_is_ok_only_when_every_check_is():
    from hanseg.node.health import Check

    ok, body = report({"a": Check(True, "fine"), "b": Check(True, "fine")})
    assert ok and body["status"] == "ok"
    ok, body = report({"a": Check(True, "fine"), "b": Check(False, "broken")})
    assert not ok and body == {
        "status": "failing",
        "checks": {"a": {"ok": True, "detail": "fine"}, "b": {"ok": False, "detail": "broken"}},
    }


def test_only_loopback_addresses_count_as_this_host_only():
    from hanseg.node.webserver import is_loopback

    assert all(is_loopback(a) for a in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(a) for a in ("0.0.0.0", "10.0.0.5", "::", "node.example.org"))
