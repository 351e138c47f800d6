"""The dashboard's HTML: every value from the queue or a DICOM header is escaped (a series
description or a warning can hold any text), and the actions a state allows are the buttons."""

from __future__ import annotations

from hanseg.node import pages

EVIL = "<script>alert('x')</script>&"


def job(**changes: object) -> dict:
    base = {
        "id": 7,
        "state": "quarantined",
        "study_uid": "1.2.3",
        "series": 2,
        "instances": 40,
        "received": "2026-12-06T10:00:00+00:00",
        "last_received": None,
        "ready": None,
        "started": None,
        "segmented": None,
        "delivered": None,
        "model_version": "0.5.1",
        "attempts": 5,
        "replaces_job": None,
        "resent_from": None,
        "reason": EVIL,
        "what_to_do": EVIL,
        "warnings": [EVIL],
        "actions": ["retry"],
        "qa_pictures": [],
        "images_removed": False,
        "audit": {"messages": [EVIL]},
    }
    return {**base, **changes}


def test_text_from_the_queue_and_the_headers_is_escaped_everywhere():
    html = pages.job(job(), actions_enabled=True)
    assert "<script>alert" not in html and html.count("&lt;script&gt;alert(") == 4  # reason, to do, warning, audit
    assert "&amp;" in html
    assert "<script>alert" not in pages.dashboard(EVIL, EVIL, show_accession=False)
    assert "<script>alert" not in pages.not_found(EVIL)


def test_the_buttons_are_the_actions_of_the_state_and_say_when_actions_are_disabled():
    html = pages.job(job(), actions_enabled=False)
    assert "id='action-retry'" in html and "action-resend" not in html and "actions are disabled" in html
    delivered = pages.job(job(state="delivered", actions=["resend"], reason=None), actions_enabled=True)
    assert "id='action-resend'" in delivered and "Quarantined:" not in delivered and "disabled" not in delivered
    assert "id='token'" not in pages.job(job(state="running", actions=[]), actions_enabled=True)


def test_a_job_without_a_picture_says_why():
    assert "removed with the job's images" in pages.job(job(images_removed=True), True).lower()
    assert "not segmented" in pages.job(job(), True)
    shown = pages.job(job(qa_pictures=["/jobs/7/qa/1.2.3/4.5.png"]), True)
    assert "<img src='/jobs/7/qa/1.2.3/4.5.png'" in shown
