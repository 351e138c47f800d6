"""The job queue: one SQLite file (WAL mode), one connection per thread.

A job is one study, segmented from everything received for it. Its status moves along::

    receiving -> ready -> running -> sending -> delivered
                                 \\-> failed (quarantined) -> ready or sending (retry)
                                 \\-> empty
                       sending -> superseded (a newer result of the study was made first)

``ready`` goes back to ``receiving`` when an instance of the study arrives before the job
started (the study was not complete after all). Instances that arrive once a job of the
study is running or done open a new job, which works on the union of what was received
(the worker's snapshot of ``incoming/<study>``) and replaces the earlier result.

The silence that makes a study complete is measured from ``settle_from``: the last arrival,
or the start of this run of the node, whichever is later. A node killed halfway through a
study must not take the pre-crash silence for completeness, since the sender may still be
waiting to send the rest (:meth:`JobQueue.resume`). Every change is one transaction, so a
SIGKILL leaves each job in a status it had; ``running`` goes back to ``ready`` at start (the
segmentation is redone). ``empty``: a job with nothing new (every instance it would use was
in the job before it, still being worked on).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NodeError

log = logging.getLogger(__name__)

RECEIVING, READY, RUNNING, SENDING, DELIVERED, FAILED, EMPTY, SUPERSEDED = (
    "receiving",
    "ready",
    "running",
    "sending",
    "delivered",
    "failed",
    "empty",
    "superseded",
)
#: status -> the statuses it may move to
TRANSITIONS: dict[str, tuple[str, ...]] = {
    RECEIVING: (READY,),
    READY: (RECEIVING, RUNNING),
    RUNNING: (SENDING, FAILED, READY, EMPTY),
    SENDING: (SENDING, DELIVERED, FAILED, SUPERSEDED),
    DELIVERED: (),
    SUPERSEDED: (),  # a newer result of the same study was made before this one was sent
    FAILED: (READY, SENDING),  # a person re-queues it (``python -m hanseg.node retry``)
    EMPTY: (),
}
#: statuses in which a job of a study is still collecting instances
OPEN = (RECEIVING, READY)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, study_uid TEXT NOT NULL, status TEXT NOT NULL,
    first_arrival REAL NOT NULL, last_arrival REAL NOT NULL, instances INTEGER NOT NULL DEFAULT 0,
    ready_at REAL, started_at REAL, segmented_at REAL, delivered_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL, reason TEXT,
    messages TEXT NOT NULL DEFAULT '[]', outputs TEXT NOT NULL DEFAULT '[]', pruned INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS series (
    job_id INTEGER NOT NULL, series_uid TEXT NOT NULL, instances INTEGER NOT NULL,
    last_arrival REAL NOT NULL, PRIMARY KEY (job_id, series_uid));
CREATE TABLE IF NOT EXISTS attempts (
    job_id INTEGER NOT NULL, at REAL NOT NULL, ok INTEGER NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (
    job_id INTEGER NOT NULL, series_uid TEXT NOT NULL, sop_uid TEXT NOT NULL, PRIMARY KEY (job_id, sop_uid));
CREATE TABLE IF NOT EXISTS actions (
    job_id INTEGER NOT NULL, at REAL NOT NULL, action TEXT NOT NULL, user TEXT NOT NULL, detail TEXT NOT NULL);
"""
#: columns added after the first release: (name, declaration); added to an older database at open
ADDED_COLUMNS = (
    ("settle_from", "REAL"),
    ("warnings", "TEXT NOT NULL DEFAULT '[]'"),
    ("replaces_job", "INTEGER"),
    ("resent_from", "INTEGER"),
    ("model_fingerprint", "TEXT"),
    ("what_to_do", "TEXT"),
)

#: the columns a transition may set besides the status
FIELDS = (
    "ready_at",
    "started_at",
    "segmented_at",
    "delivered_at",
    "attempts",
    "next_attempt_at",
    "reason",
    "messages",
    "outputs",
    "warnings",
    "replaces_job",
    "resent_from",
    "model_fingerprint",
    "what_to_do",
)


@dataclass(frozen=True)
class Job:
    id: int
    study_uid: str
    status: str
    first_arrival: float
    last_arrival: float
    instances: int
    ready_at: float | None
    started_at: float | None
    segmented_at: float | None
    delivered_at: float | None
    attempts: int
    next_attempt_at: float | None
    reason: str | None
    messages: str
    outputs: str
    pruned: int
    settle_from: float | None = None
    warnings: str = "[]"
    replaces_job: int | None = None
    resent_from: int | None = None
    model_fingerprint: str | None = None
    what_to_do: str | None = None

    @property
    def message_list(self) -> list[str]:
        return list(json.loads(self.messages or "[]"))

    @property
    def warning_list(self) -> list[str]:
        return list(json.loads(self.warnings or "[]"))

    @property
    def output_list(self) -> list[dict[str, str]]:
        return list(json.loads(self.outputs or "[]"))


class JobQueue:
    """The queue on ``path``; safe to share between threads (each gets its own connection)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        conn.executescript(SCHEMA)  # outside _tx: executescript commits on its own
        have = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
        for name, declaration in ADDED_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an acknowledged arrival survives a power cut
            self._local.conn = conn
        return conn

    def _tx(self) -> _Transaction:
        return _Transaction(self._conn())

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- arrivals and the stability trigger -----------------------------------------------

    def record_arrival(self, study_uid: str, series_uid: str, now: float) -> int:
        """Count one stored instance; the job of the study that is still collecting, or a new one."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id, status FROM jobs WHERE study_uid=? AND status IN (?, ?) ORDER BY id DESC LIMIT 1",
                (study_uid, RECEIVING, READY),
            ).fetchone()
            if row is None:
                job_id = _inserted_id(
                    db.execute(
                        "INSERT INTO jobs (study_uid, status, first_arrival, last_arrival, settle_from) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (study_uid, RECEIVING, now, now, now),
                    )
                )
                log.info("job %d: study %s: first instance received", job_id, study_uid)
            else:
                job_id = row["id"]
                if row["status"] == READY:
                    log.info("job %d: study %s: more instances arrived, waiting again", job_id, study_uid)
            db.execute(
                "UPDATE jobs SET status=?, last_arrival=?, settle_from=?, instances=instances+1, ready_at=NULL "
                "WHERE id=?",
                (RECEIVING, now, now, job_id),
            )
            db.execute(
                "INSERT INTO series VALUES (?, ?, 1, ?) ON CONFLICT(job_id, series_uid) DO UPDATE "
                "SET instances=instances+1, last_arrival=excluded.last_arrival",
                (job_id, series_uid, now),
            )
        return int(job_id)

    def promote_stable(self, now: float, stable_seconds: float) -> list[int]:
        """Jobs whose study had no new instance for ``stable_seconds`` while this node listened:
        now ``ready``."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, COALESCE(settle_from, last_arrival) AS quiet_from FROM jobs "
                "WHERE status=? AND COALESCE(settle_from, last_arrival) <= ?",
                (RECEIVING, now - stable_seconds),
            ).fetchall()
            # ready when the silence ended, not when a worker busy with another study looked
            db.executemany(
                "UPDATE jobs SET status=?, ready_at=? WHERE id=?",
                [(READY, r["quiet_from"] + stable_seconds, r["id"]) for r in rows],
            )
        for r in rows:
            log.info("job %d: no new instance for %g s: study complete, ready", r["id"], stable_seconds)
        return [int(r["id"]) for r in rows]

    # --- the worker's side ----------------------------------------------------------------

    def transition(self, job_id: int, to: str, expected: tuple[str, ...] | None = None, **fields: Any) -> bool:
        """Move a job to ``to`` (and set ``fields``) if its status is still one of ``expected``
        (default: any status allowed to move to ``to``); False when it was not."""
        allowed = expected or tuple(s for s, nxt in TRANSITIONS.items() if to in nxt)
        if any(to not in TRANSITIONS[s] for s in allowed):
            raise NodeError(f"a job cannot move from {allowed} to {to}")
        sets = _set_clause(fields)
        marks = ", ".join("?" * len(allowed))
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET {sets} WHERE id=? AND status IN ({marks})", (to, *fields.values(), job_id, *allowed)
            )
        return cur.rowcount == 1

    def next_job(self, now: float) -> Job | None:
        """What the worker does next: a send that is due (results waiting), else the oldest ready study."""
        db = self._conn()
        row = db.execute(
            "SELECT * FROM jobs WHERE status=? AND COALESCE(next_attempt_at, 0) <= ? "
            "ORDER BY next_attempt_at, id LIMIT 1",
            (SENDING, now),
        ).fetchone()
        if row is None:
            row = db.execute("SELECT * FROM jobs WHERE status=? ORDER BY id LIMIT 1", (READY,)).fetchone()
        return None if row is None else Job(**dict(row))

    def record_attempt(self, job_id: int, now: float, ok: bool, message: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO attempts VALUES (?, ?, ?, ?)", (job_id, now, int(ok), message))

    def resume(self, now: float) -> list[int]:
        """After a restart: an interrupted segmentation is redone, an interrupted send is due
        now, and every study still collecting waits ``stable_seconds`` again from ``now``: what
        was silence before the restart may have been a sender waiting for the node to return."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, status FROM jobs WHERE status IN (?, ?, ?, ?)", (RECEIVING, READY, RUNNING, SENDING)
            ).fetchall()
            db.execute(
                "UPDATE jobs SET status=?, ready_at=NULL, settle_from=? WHERE status IN (?, ?)",
                (RECEIVING, now, RECEIVING, READY),
            )
            db.execute("UPDATE jobs SET status=? WHERE status=?", (READY, RUNNING))
            db.execute("UPDATE jobs SET next_attempt_at=? WHERE status=?", (now, SENDING))
        for r in rows:
            if r["status"] in OPEN:
                log.info("job %d: still collecting (was %s): waits for silence again from now", r["id"], r["status"])
            else:
                log.info("job %d: resumed (was %s)", r["id"], r["status"])
        return [int(r["id"]) for r in rows if r["status"] not in OPEN]

    def prunable(self, before: float) -> list[Job]:
        """Jobs whose data is still on disk and older than ``before``: delivered ones, and those
        that will never be sent (superseded, empty), which hold links to the study's images too."""
        rows = (
            self._conn()
            .execute(
                "SELECT * FROM jobs WHERE pruned=0 AND ((status=? AND delivered_at <= ?) OR "
                "(status IN (?, ?) AND COALESCE(segmented_at, started_at, last_arrival) <= ?)) ORDER BY id",
                (DELIVERED, before, SUPERSEDED, EMPTY, before),
            )
            .fetchall()
        )
        return [Job(**dict(r)) for r in rows]

    def study_settled_after(self, job: Job) -> bool:
        """True when nothing of the study is still being received, made or sent, and no later
        result was delivered: its received instances may then go with ``job``."""
        row = (
            self._conn()
            .execute(
                "SELECT 1 FROM jobs WHERE study_uid=? AND (status IN (?, ?, ?, ?) OR (status=? AND id>?)) LIMIT 1",
                (job.study_uid, RECEIVING, READY, RUNNING, SENDING, DELIVERED, job.id),
            )
            .fetchone()
        )
        return row is None

    def mark_pruned(self, job_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET pruned=1 WHERE id=?", (job_id,))

    # --- reading ----------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        row = self._conn().execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NodeError(f"job {job_id} does not exist in {self.path}")
        return Job(**dict(row))

    def jobs(self, status: str | None = None) -> list[Job]:
        query, args = (
            ("SELECT * FROM jobs WHERE status=? ORDER BY id", (status,))
            if status
            else ("SELECT * FROM jobs ORDER BY id", ())
        )
        return [Job(**dict(r)) for r in self._conn().execute(query, args).fetchall()]

    def series(self, job_id: int) -> list[dict[str, Any]]:
        rows = (
            self._conn()
            .execute(
                "SELECT series_uid, instances, last_arrival FROM series WHERE job_id=? ORDER BY series_uid", (job_id,)
            )
            .fetchall()
        )
        return [dict(r) for r in rows]

    def attempts(self, job_id: int) -> list[dict[str, Any]]:
        rows = (
            self._conn()
            .execute("SELECT at, ok, message FROM attempts WHERE job_id=? ORDER BY at", (job_id,))
            .fetchall()
        )
        return [{"at": r["at"], "ok": bool(r["ok"]), "message": r["message"]} for r in rows]

    def adopt(self, study_uid: str, series_counts: dict[str, int], now: float) -> int:
        """Files found in ``incoming/`` at start-up that no open job counts (their arrival was
        not recorded before a crash): one receiving job, complete after the usual wait."""
        with self._tx() as db:
            job_id = _inserted_id(
                db.execute(
                    "INSERT INTO jobs (study_uid, status, first_arrival, last_arrival, settle_from, "
                    "instances) VALUES (?, ?, ?, ?, ?, ?)",
                    (study_uid, RECEIVING, now, now, now, sum(series_counts.values())),
                )
            )
            db.executemany(
                "INSERT INTO series VALUES (?, ?, ?, ?)", [(job_id, uid, n, now) for uid, n in series_counts.items()]
            )
        log.info(
            "job %d: study %s: %d instance(s) found on disk at start-up", job_id, study_uid, sum(series_counts.values())
        )
        return int(job_id)

    # --- what each job used, and what a person did -----------------------------------------

    def set_inputs(self, job_id: int, instances: Iterable[tuple[str, str]]) -> None:
        """The (series UID, SOP instance UID) pairs of the job's snapshot, replacing any earlier."""
        with self._tx() as db:
            db.execute("DELETE FROM inputs WHERE job_id=?", (job_id,))
            db.executemany("INSERT OR IGNORE INTO inputs VALUES (?, ?, ?)", [(job_id, s, i) for s, i in instances])

    def inputs(self, job_id: int) -> frozenset[tuple[str, str]]:
        rows = self._conn().execute("SELECT series_uid, sop_uid FROM inputs WHERE job_id=?", (job_id,)).fetchall()
        return frozenset((r["series_uid"], r["sop_uid"]) for r in rows)

    def earlier_inputs(self, job: Job) -> frozenset[tuple[str, str]]:
        """Everything any earlier job of the study used: what the study held at some point."""
        rows = (
            self._conn()
            .execute(
                "SELECT DISTINCT series_uid, sop_uid FROM inputs JOIN jobs ON jobs.id=inputs.job_id "
                "WHERE study_uid=? AND job_id<?",
                (job.study_uid, job.id),
            )
            .fetchall()
        )
        return frozenset((r["series_uid"], r["sop_uid"]) for r in rows)

    def study_inputs(self, study_uid: str) -> tuple[frozenset[tuple[str, str]], float | None]:
        """Everything the study's jobs used, and when the last of them took or sent it: a file
        written after that is newer than every job (still being received) and is kept."""
        conn = self._conn()
        rows = conn.execute(
            "SELECT DISTINCT series_uid, sop_uid FROM inputs JOIN jobs ON jobs.id=inputs.job_id WHERE study_uid=?",
            (study_uid,),
        ).fetchall()
        last = conn.execute(
            "SELECT MAX(COALESCE(delivered_at, started_at)) AS t FROM jobs WHERE study_uid=?", (study_uid,)
        ).fetchone()
        return frozenset((r["series_uid"], r["sop_uid"]) for r in rows), None if last is None else last["t"]

    def without_inputs(self) -> list[Job]:
        """Jobs past receiving that recorded no inputs (made by a release before inputs were kept)."""
        rows = (
            self._conn()
            .execute(
                "SELECT * FROM jobs WHERE status NOT IN (?, ?) AND NOT EXISTS "
                "(SELECT 1 FROM inputs WHERE job_id=jobs.id) ORDER BY id",
                (RECEIVING, READY),
            )
            .fetchall()
        )
        return [Job(**dict(r)) for r in rows]

    def newer_than(self, job: Job) -> list[Job]:
        rows = (
            self._conn()
            .execute("SELECT * FROM jobs WHERE study_uid=? AND id>? ORDER BY id", (job.study_uid, job.id))
            .fetchall()
        )
        return [Job(**dict(r)) for r in rows]

    def segmented(self, job_id: int, supersede: int | None, supersede_reason: str, **fields: Any) -> bool:
        """``running`` → ``sending`` with ``fields`` and, in the same transaction, the study's
        earlier result still waiting to be sent → ``superseded``: a SIGKILL between the two would
        otherwise leave both to be sent."""
        sets = _set_clause(fields)
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET {sets} WHERE id=? AND status=?", (SENDING, *fields.values(), job_id, RUNNING)
            )
            if cur.rowcount == 1 and supersede is not None:
                db.execute(
                    "UPDATE jobs SET status=?, reason=? WHERE id=? AND status=?",
                    (SUPERSEDED, supersede_reason, supersede, SENDING),
                )
        return cur.rowcount == 1

    def previous(self, job: Job) -> Job | None:
        """The latest earlier job of the same study that took a snapshot of it (any outcome)."""
        row = (
            self._conn()
            .execute(
                "SELECT * FROM jobs WHERE study_uid=? AND id<? AND status NOT IN (?, ?, ?) "
                "AND EXISTS (SELECT 1 FROM inputs WHERE job_id=jobs.id) ORDER BY id DESC LIMIT 1",
                (job.study_uid, job.id, RECEIVING, READY, EMPTY),
            )
            .fetchone()
        )
        return None if row is None else Job(**dict(row))

    def latest_result(self, job: Job) -> Job | None:
        """The latest earlier job of the same study whose results were made (sending or delivered)."""
        row = (
            self._conn()
            .execute(
                "SELECT * FROM jobs WHERE study_uid=? AND id<? AND status IN (?, ?) ORDER BY id DESC LIMIT 1",
                (job.study_uid, job.id, SENDING, DELIVERED),
            )
            .fetchone()
        )
        return None if row is None else Job(**dict(row))

    def replaced_by(self, job_id: int) -> list[int]:
        rows = self._conn().execute("SELECT id FROM jobs WHERE replaces_job=? ORDER BY id", (job_id,)).fetchall()
        return [int(r["id"]) for r in rows]

    def recent(self, limit: int, status: str | None = None) -> list[Job]:
        """The newest ``limit`` jobs (of ``status``), newest first."""
        where, args = ("WHERE status=? ", (status,)) if status else ("", ())
        rows = self._conn().execute(f"SELECT * FROM jobs {where}ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [Job(**dict(r)) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status."""
        rows = self._conn().execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        return {r["status"]: int(r["n"]) for r in rows}

    def add_resend(self, job: Job, now: float, due: float) -> int:
        """A new job, sending at ``due``, that sends ``job``'s results again (its outputs are set
        once its files are linked), with the same inputs, warnings and replaced result: the
        study's newest result, as when a study is sent again unchanged."""
        with self._tx() as db:
            job_id = _inserted_id(
                db.execute(
                    "INSERT INTO jobs (study_uid, status, first_arrival, last_arrival, instances, started_at, "
                    "segmented_at, next_attempt_at, messages, outputs, warnings, replaces_job, resent_from, "
                    "model_fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.study_uid,
                        SENDING,
                        job.first_arrival,
                        job.last_arrival,
                        job.instances,
                        now,
                        now,
                        due,
                        job.messages,
                        "[]",
                        job.warnings,
                        job.replaces_job,
                        job.id,
                        job.model_fingerprint,
                    ),
                )
            )
            db.execute(
                "INSERT INTO series SELECT ?, series_uid, instances, last_arrival FROM series WHERE job_id=?",
                (job_id, job.id),
            )
            db.execute("INSERT INTO inputs SELECT ?, series_uid, sop_uid FROM inputs WHERE job_id=?", (job_id, job.id))
        return job_id

    def record_action(self, job_id: int, now: float, action: str, user: str, detail: str = "") -> None:
        with self._tx() as db:
            db.execute("INSERT INTO actions VALUES (?, ?, ?, ?, ?)", (job_id, now, action, user, detail))

    def actions(self, job_id: int) -> list[dict[str, Any]]:
        rows = (
            self._conn()
            .execute("SELECT at, action, user, detail FROM actions WHERE job_id=? ORDER BY at", (job_id,))
            .fetchall()
        )
        return [dict(r) for r in rows]

    def open_job(self, study_uid: str) -> Job | None:
        row = (
            self._conn()
            .execute(
                "SELECT * FROM jobs WHERE study_uid=? AND status IN (?, ?) ORDER BY id DESC LIMIT 1",
                (study_uid, RECEIVING, READY),
            )
            .fetchone()
        )
        return None if row is None else Job(**dict(row))

    def force_complete(self, job_id: int, now: float) -> bool:
        """A person says the study is complete: ``ready`` now, without waiting for silence."""
        return self.transition(job_id, READY, (RECEIVING,), ready_at=now)

    def latest_inputs(self, study_uid: str) -> frozenset[tuple[str, str]]:
        """What the latest job of the study that took a snapshot used (empty: none did)."""
        row = (
            self._conn()
            .execute(
                "SELECT MAX(job_id) AS id FROM inputs JOIN jobs ON jobs.id=inputs.job_id WHERE study_uid=?",
                (study_uid,),
            )
            .fetchone()
        )
        return frozenset() if row is None or row["id"] is None else self.inputs(int(row["id"]))


def _set_clause(fields: dict[str, Any]) -> str:
    """``status=?, <field>=?, ...`` for an UPDATE; only the columns a transition may set."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise NodeError(f"job fields {sorted(unknown)} do not exist")
    return ", ".join(["status=?"] + [f"{k}=?" for k in fields])


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    """The row id of the row an INSERT on ``cursor`` just added (``lastrowid``, which sqlite3 leaves
    None only on a cursor that has inserted nothing)."""
    if cursor.lastrowid is None:
        raise sqlite3.DatabaseError("an INSERT returned no row id")
    return cursor.lastrowid


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on an exception): one writer at a time."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
