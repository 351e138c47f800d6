"""The node's dashboard as a physicist uses it, with the real parts: the node started as
docs/operations.md says (``python -m hanseg.node ... --http-port``, the shipped model on the
CPU, the token from the environment), Debian's Orthanc as the destination, dcmtk's
``storescu`` as the scanner, a local webhook receiver, and Debian's headless Chromium driven
through Selenium.

The destination is down when the study arrives: two short retries, then quarantine and one
alert. Orthanc is started; in the browser the quarantined job shows its QA picture, the
re-queue button is refused without the token and works with it, and the dashboard's rows turn
to "delivered" without a reload. ``/healthz``, ``/metrics`` (parsed, checked against the job)
and ``/api/jobs`` are read at the end. Screenshots are kept in ``test-artifacts/``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import ROOT, need_tools
from node_helpers import Webhook
from orthanc_helpers import NODE_AET, PACS_AET, SCANNER_AET, TOOLS, Orthanc, free_port, stop_pid

TOKEN = "dashboard-test-token-0123"
ARTIFACTS = ROOT / "test-artifacts"


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:  # not listening yet
        return 0, b""


def wait(condition, seconds: float, what: str, log: Path) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: " + log.read_text()[-4000:])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, chromedriver = need_tools("chromium", "chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for a driver on the internet
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def test_a_quarantined_study_is_seen_requeued_and_delivered_from_the_browser(tmp_path, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from phantoms.dicom_export import ExportOptions, export_case

    need_tools(*TOOLS)
    node_port, http_port, hook = free_port(), free_port(), Webhook()
    pacs = Orthanc(tmp_path, node_port)
    pacs.wait_up()
    pacs.stop()  # the destination is down when the study arrives
    study = export_case(
        ROOT / "test/images/ct/case_01_CT.mha",
        ROOT / "test/images/t1-mri/case_01_T1.mha",
        tmp_path / "export",
        7,
        ExportOptions(patient_id="DASH1"),
    )
    log = tmp_path / "node.log"
    cmd = [
        sys.executable, "-m", "hanseg.node",
        "--ae-title", NODE_AET, "--port", str(node_port), "--bind", "127.0.0.1",
        "--storage", str(tmp_path / "storage"),
        "--destination", f"{PACS_AET}@127.0.0.1:{pacs.dicom_port}",
        "--allow", f"{SCANNER_AET}@127.0.0.1",
        "--model", str(ROOT / "model"), "--device", "cpu",
        "--stable-seconds", "4", "--retries", "2", "--retry-seconds", "1",
        "--http-port", str(http_port), "--notify-url", hook.url,
    ]  # fmt: skip
    with open(log, "w") as out:
        node = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=out, env={**os.environ, "HANSEG_HTTP_TOKEN": TOKEN})
    try:
        wait(lambda: get(http_port, "/healthz")[0] == 200 or node.poll() is not None, 240, "/healthz", log)
        assert node.poll() is None, log.read_text()[-3000:]
        sent = subprocess.run(
            ["storescu", "-aet", SCANNER_AET, "-aec", NODE_AET, "+sd", "+r", "-nh", "127.0.0.1", str(node_port),
             str(study.folder)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr[-3000:]
        files = sum(len(s.files) for s in study.series)

        def state() -> str | None:
            jobs = json.loads(get(http_port, "/api/jobs")[1])["jobs"]
            return jobs[0]["state"] if jobs else None

        wait(lambda: state() == "quarantined", 240, "quarantine", log)
        wait(lambda: len(hook.bodies) >= 1, 30, "the alert", log)

        # the dashboard stays open in this tab; the rows are rebuilt from /api/jobs every 3 s, so
        # a row found before a refresh is stale after it: it is looked up each time
        browser.get(f"http://127.0.0.1:{http_port}/")
        rows = WebDriverWait(browser, 120, ignored_exceptions=[StaleElementReferenceException])
        rows.until(lambda d: d.find_element(By.ID, "job-1").get_attribute("data-state") == "quarantined")
        browser.execute_script("window.loadedOnce = true")  # gone if the page were reloaded
        dashboard = browser.current_window_handle
        browser.switch_to.new_window("tab")
        browser.get(f"http://127.0.0.1:{http_port}/jobs/1")
        picture = browser.find_element(By.CSS_SELECTOR, "#qa img")
        WebDriverWait(browser, 20).until(lambda d: d.execute_script("return arguments[0].naturalWidth", picture) > 300)
        assert "Quarantined:" in browser.find_element(By.ID, "reason").text
        assert "Test^" not in browser.page_source and "DASH1" not in browser.page_source
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard-job-quarantined.png"))

        browser.find_element(By.ID, "action-retry").click()  # no token typed
        message = browser.find_element(By.ID, "message")
        WebDriverWait(browser, 10).until(lambda d: message.get_attribute("data-status"))
        assert message.get_attribute("data-status") == "401" and "refused" in message.text
        assert state() == "quarantined"

        pacs.start()
        pacs.wait_up()
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "user").send_keys("test physicist")
        browser.find_element(By.ID, "action-retry").click()
        WebDriverWait(browser, 10).until(lambda d: message.get_attribute("data-status") == "200")

        browser.switch_to.window(dashboard)
        text = rows.until(
            lambda d: (
                d.find_element(By.ID, "job-1").get_attribute("data-state") == "delivered"
                and d.find_element(By.ID, "job-1").text
            )
        )
        assert browser.execute_script("return window.loadedOnce") is True  # refreshed without a reload
        assert not browser.find_element(By.ID, "health").is_displayed()  # the red line: only when failing
        assert study.study_uid in text and "delivered" in text
        browser.find_element(By.ID, "show-quarantined").click()  # the counts filter the rows
        rows.until(lambda d: not d.find_elements(By.ID, "job-1"))
        browser.find_element(By.ID, "show-delivered").click()
        rows.until(lambda d: d.find_elements(By.ID, "job-1"))
        browser.save_screenshot(str(ARTIFACTS / "dashboard-delivered.png"))
        print(f"screenshots: {ARTIFACTS}/dashboard-job-quarantined.png, dashboard-delivered.png")

        status, health = get(http_port, "/healthz")
        assert status == 200 and json.loads(health)["status"] == "ok"
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(get(http_port, "/metrics")[1].decode())
            for s in family.samples
        }
        assert samples[("hanseg_jobs", (("state", "delivered"),))] == 1
        assert samples[("hanseg_jobs", (("state", "quarantined"),))] == 0
        assert samples[("hanseg_instances_received_total", ())] == files
        assert samples[("hanseg_associations_total", (("reason", "ok"), ("result", "accepted")))] >= 1
        assert samples[("hanseg_send_failures_total", ())] == 2 and samples[("hanseg_quarantined_total", ())] == 1
        assert samples[("hanseg_segmentation_seconds_count", ())] == 1
        (job,) = json.loads(get(http_port, "/api/jobs")[1])["jobs"]
        assert job["study_uid"] == study.study_uid and job["instances"] == files and job["model_version"]
        assert pacs.rtstructs(study.study_uid)
        (alert,) = hook.bodies  # two failed attempts and a quarantine: one alert
        assert alert["event"] == "job_quarantined" and alert["study_uid"] == study.study_uid
        audit = json.loads((tmp_path / "storage" / "audit" / "1.json").read_text())
        assert [a["action"] for a in audit["actions"]] == ["retry"]
        assert audit["actions"][0]["user"].startswith("test physicist (operator token")
    finally:
        stop_pid(node)
        hook.stop()
        stop_pid(pacs.proc)
    assert node.returncode == 0, log.read_text()[-3000:]
