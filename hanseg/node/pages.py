"""The dashboard's HTML and its one script: no template engine, no file served from outside
this module, nothing loaded from the internet (a hospital server often has none). Every value
from the queue is escaped here, or set as ``textContent`` by the script."""

from __future__ import annotations

import json
from html import escape
from typing import Any

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}
.meta{color:#555;margin-bottom:1em}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.uid{font-family:monospace;font-size:.85em;word-break:break-all}
.state{font-weight:600;padding:.1em .4em;border-radius:.3em}
.receiving,.ready{background:#e8f0fe}.running,.sending{background:#fff4ce}
.delivered{background:#dff6dd}.quarantined{background:#fde7e9}
.counts a{margin-right:1.2em}.counts a.shown{font-weight:700;text-decoration:none;color:#222}
.reason{background:#fde7e9;padding:.6em;border-radius:.3em}
.qa img{max-width:100%;border:1px solid #ccc;margin:.5em 0}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.85em}
#message{margin:.6em 0;font-weight:600}
#health{background:#d13438;color:#fff;padding:.5em;border-radius:.3em;margin-bottom:.8em}
"""

#: rows refreshed from /api/jobs every few seconds, without reloading the page; the actions
#: POST JSON with the token as a bearer token (kept for this tab only, in sessionStorage)
SCRIPT = """
"use strict";
const COLUMNS = ["id", "state", "study_uid", "series", "instances", "received", "started", "segmented",
                 "delivered", "model_version", "warnings", "attempts"];
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function time(iso) { return iso ? iso.replace("T", " ").replace("+00:00", " UTC") : ""; }
let shown = "";  // a state picked from the counts ("": every state)
async function refresh() {
  const body = document.getElementById("jobs");
  if (!body) return;
  let data;
  try {
    const response = await fetch("/api/jobs" + (shown ? "?state=" + shown : ""), {cache: "no-store"});
    data = await response.json();
  } catch (e) {
    document.getElementById("status").textContent = "the node does not answer: " + e;
    return;
  }
  document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
  await showHealth();
  const counts = document.getElementById("counts");
  counts.replaceChildren();
  for (const [state, n] of Object.entries({all: null, ...data.counts})) {
    const link = document.createElement("a");
    link.href = "#";
    link.textContent = n === null ? "all" : state + ": " + n;
    link.id = "show-" + state;
    if ((state === "all" ? "" : state) === shown) link.className = "shown";
    link.addEventListener("click", (event) => {
      event.preventDefault();
      shown = state === "all" ? "" : state;
      refresh();
    });
    counts.appendChild(link);
  }
  const rows = [];
  for (const job of data.jobs) {
    const tr = document.createElement("tr");
    tr.id = "job-" + job.id;
    tr.dataset.state = job.state;
    const link = document.createElement("a");
    link.href = "/jobs/" + job.id;
    link.textContent = job.id;
    cell(tr, "").appendChild(link);
    cell(tr, job.state, "state " + job.state);
    const study = cell(tr, job.study_uid, "uid");
    if ("accession" in job && job.accession) study.textContent += " (accession " + job.accession + ")";
    cell(tr, job.series);
    cell(tr, job.instances);
    cell(tr, time(job.received));
    cell(tr, time(job.started));
    cell(tr, time(job.segmented));
    cell(tr, time(job.delivered));
    cell(tr, job.model_version);
    cell(tr, job.warnings.length ? job.warnings.join("; ") : "");
    cell(tr, job.attempts);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}
async function showHealth() {
  // a red line naming each failing check of /healthz (no line while the node is healthy)
  const banner = document.getElementById("health");
  try {
    const response = await fetch("/healthz", {cache: "no-store"});
    const data = await response.json();
    const failing = Object.entries(data.checks).filter(([, c]) => !c.ok).map(([n, c]) => n + ": " + c.detail);
    banner.textContent = failing.join("; ");
    banner.hidden = failing.length === 0;
  } catch (e) {
    banner.textContent = "health unknown: " + e;
    banner.hidden = false;
  }
}
async function act(jobId, action) {
  const message = document.getElementById("message");
  const tokenField = document.getElementById("token");
  const token = tokenField.value || sessionStorage.getItem("hanseg-token") || "";
  if (tokenField.value) sessionStorage.setItem("hanseg-token", tokenField.value);
  const headers = {"Content-Type": "application/json"};
  if (token) headers["Authorization"] = "Bearer " + token;
  const user = document.getElementById("user").value;
  const response = await fetch("/api/jobs/" + jobId + "/" + action,
                               {method: "POST", headers: headers, body: JSON.stringify({user: user})});
  const data = await response.json();
  message.textContent = response.ok ? action + " done: job " + data.job.id + " is " + data.job.state
                                    : "refused (" + response.status + "): " + data.error;
  message.dataset.status = String(response.status);
  if (response.ok) setTimeout(() => location.reload(), 1500);
}
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => act(button.dataset.job, button.dataset.action));
  }
  refresh();
  setInterval(refresh, 3000);
});
"""

HEADERS = (
    "job",
    "state",
    "study",
    "series",
    "instances",
    "received",
    "started",
    "segmented",
    "delivered",
    "model",
    "warnings",
    "attempts",
)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style>"
        "<script src='/dashboard.js'></script></head>"
        f"<body>{body}</body></html>"
    )


def dashboard(model_version: str, destination: str, show_accession: bool) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    return _page(
        "hanseg node",
        f"<h1>Auto-contouring node</h1><div class='meta'>model {escape(model_version)} &middot; results to "
        f"{escape(destination)} &middot; <a href='/metrics'>metrics</a> &middot; <a href='/healthz'>health</a> "
        f"&middot; <span id='status'>loading</span></div>"
        "<div id='health' hidden></div><div class='counts' id='counts'></div>"
        f"<table><thead><tr>{head}</tr></thead><tbody id='jobs'></tbody></table>"
        + ("<p class='meta'>Accession numbers shown (--show-accession).</p>" if show_accession else ""),
    )


def _facts(job: dict[str, Any]) -> str:
    rows = [
        ("state", job["state"]),
        ("study", job["study_uid"] + (f" (accession {job['accession']})" if job.get("accession") else "")),
        ("series / instances", f"{job['series']} / {job['instances']}"),
        ("received", job["received"]),
        ("last received", job["last_received"]),
        ("complete", job["ready"]),
        ("started", job["started"]),
        ("segmented", job["segmented"]),
        ("delivered", job["delivered"]),
        ("model", job["model_version"]),
        ("sending attempts", job["attempts"]),
        ("replaces job", job["replaces_job"]),
        ("sent again from job", job["resent_from"]),
    ]
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows if v not in (None, ""))
    return f"<table id='facts'>{cells}</table>"


ACTION_LABELS = {
    "retry": "Re-queue (segment or send again)",
    "force-complete": "Force-complete (the study is whole now)",
    "resend": "Re-send the results",
}


def job(job: dict[str, Any], actions_enabled: bool) -> str:
    job_id = int(job["id"])
    parts = [f"<p><a href='/'>&larr; all jobs</a></p><h1>Job {job_id}</h1>", _facts(job)]
    if job["state"] == "quarantined" and job["reason"]:
        parts.append(
            f"<div class='reason' id='reason'><b>Quarantined:</b> {escape(job['reason'])}"
            + (f"<br><b>To do:</b> {escape(job['what_to_do'])}" if job["what_to_do"] else "")
            + "</div>"
        )
    if job["warnings"]:
        items = "".join(f"<li>{escape(w)}</li>" for w in job["warnings"])
        parts.append(f"<h2>Warnings</h2><ul id='warnings'>{items}</ul>")
    if job["actions"]:
        buttons = "".join(
            f"<button data-job='{job_id}' data-action='{escape(a)}' id='action-{escape(a)}'>"
            f"{escape(ACTION_LABELS[a])}</button> "
            for a in job["actions"]
        )
        note = "" if actions_enabled else " <i>(actions are disabled on this node: no token is set)</i>"
        parts.append(
            "<h2>Actions</h2><p><label>token <input type='password' id='token' autocomplete='off'></label> "
            f"<label>your name <input id='user' autocomplete='name'></label></p><p>{buttons}{note}</p>"
            "<div id='message'></div>"
        )
    parts.append("<h2>QA picture</h2><div class='qa' id='qa'>")
    if job["qa_pictures"]:
        parts += [f"<img src='{escape(url)}' alt='QA picture {escape(url)}'>" for url in job["qa_pictures"]]
    elif job["images_removed"]:
        parts.append("<p>Removed with the job's images after --retention-hours.</p>")
    else:
        parts.append("<p>None: the job was not segmented.</p>")
    parts.append("</div>")
    audit = json.dumps(job["audit"], indent=2) if job["audit"] is not None else "not written yet"
    parts.append(f"<h2>Audit record</h2><pre id='audit'>{escape(audit)}</pre>")
    return _page(f"job {job_id}", "".join(parts))


def not_found(job_id: object) -> str:
    return _page("no such job", f"<p><a href='/'>&larr; all jobs</a></p><h1>No job {escape(str(job_id))}</h1>")
