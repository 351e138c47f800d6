"""The node's web service in-process, over real HTTP on a free port: ``/api/jobs``, ``/metrics``
(parsed with prometheus_client's parser and checked against the jobs), ``/healthz``, the job
page with its QA picture, the actions with and without a token, and the webhook alerts (a
local receiver, and one that is down). A fake predictor stands in for the network; the
browser test with the shipped model is tests/integration/test_node_dashboard.py."""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dicom_fixtures import write_series
from hanseg.node.config import HttpSettings
from hanseg.node.errors import NodeError
from hanseg.node.jobs import DELIVERED, FAILED, RECEIVING
from node_helpers import CT, Destination, Webhook, free_port, node_factory, send, wait_for

TOKEN = "correct-horse-battery"


@pytest.fixture
def node(tmp_path):
    yield from node_factory(tmp_path)


def http(port: int, path: str, method: str = "GET", body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request to the node's web service."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw, kind = response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("content-type", "")
    return status, json.loads(raw) if kind.startswith("application/json") else raw


def act(port: int, job_id: int, action: str, token: str | None = TOKEN, user: str = "") -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http(port, f"/api/jobs/{job_id}/{action}", "POST", {"user": user}, headers)


def metrics(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by (name, sorted labels)."""
    status, text = http(port, "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def web(tokens: tuple = (("alice", TOKEN),), **changes: Any) -> dict:
    return {
        "http": HttpSettings(free_port(), tokens=tokens, **changes),
        "retention_hours": 1.0,
        **changes.pop("node", {}),
    }


def test_a_delivered_study_is_in_the_api_metrics_health_and_its_page(node, tmp_path):
    files = write_series(tmp_path / "in", CT)
    service = node(**web())
    port = service.config.http.port
    destination = Destination(service.config.destination.port)
    try:
        assert send(files, service.config.port) == [0] * len(files)
        wait_for(lambda: [j.status for j in service.queue.jobs()] == [DELIVERED])
    finally:
        destination.stop()
    status, listing = http(port, "/api/jobs")
    assert status == 200 and listing["model_version"] == "fake"
    (job,) = listing["jobs"]
    assert job["state"] == "delivered" and job["study_uid"] == CT.study_uid
    assert (job["series"], job["instances"], job["model_version"]) == (1, len(files), "fake")
    assert job["received"] and job["started"] and job["segmented"] and job["delivered"]
    assert job["actions"] == ["resend"] and "accession" not in job
    assert listing["counts"]["delivered"] == 1 and listing["counts"]["quarantined"] == 0

    samples = metrics(port)
    assert samples[("hanseg_jobs", (("state", "delivered"),))] == 1
    assert samples[("hanseg_jobs", (("state", "quarantined"),))] == 0
    assert samples[("hanseg_instances_received_total", ())] == len(files)
    assert samples[("hanseg_associations_total", (("reason", "ok"), ("result", "accepted")))] == 1
    assert samples[("hanseg_segmentation_seconds_count", ())] == 1
    assert samples[("hanseg_delivery_seconds_count", ())] == 1
    assert samples[("hanseg_turnaround_seconds_count", ())] == 1
    assert samples[("hanseg_queue_depth", ())] == 0
    assert samples[("hanseg_storage_free_bytes", ())] > samples[("hanseg_storage_floor_bytes", ())] > 0
    assert samples[("hanseg_model_info", (("fingerprint", "fake-fingerprint"), ("software_version", "0.1.0"), ("version", "fake")))] == 1  # fmt: skip

    status, health = http(port, "/healthz")
    assert status == 200 and health["status"] == "ok"
    assert set(health["checks"]) == {"listener", "worker", "disk", "queue"}

    status, page = http(port, f"/jobs/{job['id']}")
    assert status == 200 and b"Audit record" in page and CT.study_uid.encode() in page
    (picture,) = http(port, f"/api/jobs/{job['id']}")[1]["qa_pictures"]
    status, png = http(port, picture)
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert picture.encode() in page
    for path in ("/", "/api/jobs", f"/jobs/{job['id']}", f"/api/jobs/{job['id']}", "/metrics"):
        assert b"Test^Patient" not in json.dumps(http(port, path)[1], default=bytes.decode).encode()
    assert http(port, "/jobs/999")[0] == 404 and http(port, f"/jobs/{job['id']}/qa/../../node.sqlite3")[0] == 404


def test_actions_need_a_token_and_json_and_are_audited_with_the_user(node, tmp_path):
    files = write_series(tmp_path / "in", CT)
    service = node(**web())
    port = service.config.http.port
    destination = Destination(service.config.destination.port)
    try:
        send(files, service.config.port)
        wait_for(lambda: [j.status for j in service.queue.jobs()] == [DELIVERED])
        assert act(port, 1, "resend", token=None)[0] == 401
        assert act(port, 1, "resend", token="wrong-token-123456")[0] == 401
        basic = base64.b64encode(f"mallory:{TOKEN}".encode()).decode()  # alice's token, another name
        assert http(port, "/api/jobs/1/resend", "POST", {}, {"Authorization": f"Basic {basic}", "Content-Type": "application/json"})[0] == 401  # fmt: skip
        plain = http(port, "/api/jobs/1/resend", "POST", None, {"Authorization": f"Bearer {TOKEN}"})
        assert plain[0] == 415  # a form post from another site cannot send JSON without the page's consent
        assert act(port, 1, "retry")[0] == 409  # only a quarantined job is re-queued
        assert len(destination.received) == 2 and len(service.queue.jobs()) == 1
        status, answer = act(port, 1, "resend", user="Dr Who")
        assert status == 200 and answer["job"]["id"] == 2
        wait_for(lambda: [j.status for j in service.queue.jobs()] == [DELIVERED, DELIVERED])
    finally:
        destination.stop()
    first, again = destination.received[:2], destination.received[2:]
    assert sorted(ds.SOPInstanceUID for ds in again) == sorted(ds.SOPInstanceUID for ds in first)
    (action,) = json.loads((service.layout.audit / "1.json").read_text())["actions"]
    assert action["action"] == "resend" and action["user"].startswith("Dr Who (alice token")
    assert json.loads((service.layout.audit / "2.json").read_text())["resent_from_job"] == 1


def test_without_a_token_every_action_is_refused(node, tmp_path):
    service = node(**web(tokens=()), stable_seconds=600)
    send(write_series(tmp_path / "in", CT), service.config.port)
    status, answer = act(service.config.http.port, 1, "force-complete")
    assert status == 403 and "disabled" in answer["error"]
    assert service.queue.get(1).status == RECEIVING and service.queue.actions(1) == []


def test_force_complete_from_the_dashboard_ends_the_wait(node, tmp_path):
    service = node(**web(), stable_seconds=600)
    destination = Destination(service.config.destination.port)
    try:
        send(write_series(tmp_path / "in", CT), service.config.port)
        assert service.queue.get(1).status == RECEIVING
        assert act(service.config.http.port, 1, "force-complete")[0] == 200
        wait_for(lambda: service.queue.get(1).status == DELIVERED)
    finally:
        destination.stop()
    assert [a["action"] for a in json.loads((service.layout.audit / "1.json").read_text())["actions"]] == [
        "force-complete"
    ]


def test_a_destination_down_quarantines_alerts_once_and_requeue_delivers(node, tmp_path):
    hook = Webhook()
    service = node(**web(), notify_url=hook.url)
    port = service.config.http.port
    try:
        send(write_series(tmp_path / "in", CT), service.config.port)  # nothing listens at the destination
        wait_for(lambda: service.queue.get(1).status == FAILED)
        wait_for(lambda: len(hook.bodies) == 1)
        (alert,) = hook.bodies
        assert alert["event"] == "job_quarantined" and alert["job_id"] == 1 and alert["node"] == "HANSEG"
        assert alert["study_uid"] == CT.study_uid and "not delivered after 2" in alert["text"]
        assert "retry 1" in alert["what_to_do"]
        assert http(port, "/api/jobs")[1]["jobs"][0]["actions"] == ["retry"]
        assert [j["id"] for j in http(port, "/api/jobs?state=quarantined")[1]["jobs"]] == [1]
        assert http(port, "/api/jobs?state=delivered")[1]["jobs"] == []
        status, answer = http(port, "/api/jobs?state=failed")  # the queue's word; the API says quarantined
        assert status == 400 and "quarantined" in answer["error"]
        status, page = http(port, "/jobs/1")
        assert status == 200 and b"Quarantined:" in page and b"not delivered after 2" in page
        destination = Destination(service.config.destination.port)
        try:
            assert act(port, 1, "retry", user="night physicist")[0] == 200
            wait_for(lambda: service.queue.get(1).status == DELIVERED)
        finally:
            destination.stop()
        assert sorted(ds.Modality for ds in destination.received) == ["RTSTRUCT", "SEG"]
        samples = metrics(port)
        assert samples[("hanseg_send_failures_total", ())] == 2 and samples[("hanseg_quarantined_total", ())] == 1
        wait_for(lambda: metrics(port).get(("hanseg_notifications_total", (("result", "sent"),))) == 1)
        assert len(hook.bodies) == 1  # two failed attempts, one quarantine: one alert
    finally:
        hook.stop()


def test_a_webhook_that_never_answers_does_not_hold_up_delivery(node, tmp_path):
    """The alert of a quarantine goes to a webhook that accepts the connection and never
    answers; the job is re-queued and delivered while the alert still waits."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nothing ever reads or answers
    try:
        service = node(**web(), notify_url=f"http://127.0.0.1:{silent.getsockname()[1]}/hook", retries=1)
        notifier = service.telemetry.alerts.notifier
        notifier.timeout_s, notifier.pause_s = 1.5, 0.05  # three attempts: 4.5 s
        send(write_series(tmp_path / "in", CT), service.config.port)
        wait_for(lambda: service.queue.get(1).status == FAILED)
        destination = Destination(service.config.destination.port)
        try:
            assert act(service.config.http.port, 1, "retry")[0] == 200
            wait_for(lambda: service.queue.get(1).status == DELIVERED)
            # delivered while the alert was still being tried
            assert (
                metrics(service.config.http.port).get(("hanseg_notifications_total", (("result", "failed"),))) is None
            )
        finally:
            destination.stop()
        assert sorted(ds.Modality for ds in destination.received) == ["RTSTRUCT", "SEG"]
        port = service.config.http.port
        wait_for(lambda: metrics(port).get(("hanseg_notifications_total", (("result", "failed"),))) == 1, 20)
    finally:
        silent.close()


def test_health_is_503_with_the_reason_when_the_disk_is_below_its_floor(node):
    service = node(**web(), min_free_gb=1e9)  # a floor no disk reaches
    status, health = http(service.config.http.port, "/healthz")
    assert status == 503 and health["status"] == "failing"
    assert not health["checks"]["disk"]["ok"] and "new studies are refused" in health["checks"]["disk"]["detail"]
    assert health["checks"]["worker"]["ok"] and health["checks"]["listener"]["ok"]


def test_a_web_port_in_use_stops_the_start_with_a_message(node):
    first = node(**web())
    with pytest.raises(NodeError, match=f"--http-port {first.config.http.port}.*cannot listen"):
        node(http=HttpSettings(first.config.http.port), storage=first.config.storage.parent / "other")


def test_show_accession_adds_the_accession_number_and_nothing_else(node, tmp_path):
    service = node(**web(show_accession=True))
    send(write_series(tmp_path / "in", CT), service.config.port)
    (job,) = http(service.config.http.port, "/api/jobs")[1]["jobs"]
    assert "accession" in job and "Test^Patient" not in json.dumps(job)
