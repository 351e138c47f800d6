"""The job queue: one SQLite file (WAL mode), one connection per thread.

A job is one study. Its status moves only forward along::

    receiving -> ready -> running -> sending -> delivered
                                 \\-> failed (quarantined)      (and empty, see below)

``ready`` goes back to ``receiving`` when an instance of the study arrives before the job
started (the study was not complete after all). Every change is one transaction, so a
SIGKILL leaves each job in a status it had; :meth:`JobQueue.resume` then puts ``running``
back to ``ready`` (the segmentation is redone from the kept input). ``empty``: a job whose
instances were all taken by the job before it (an instance that arrived while that one was
being moved into its job folder), nothing to do.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NodeError

log = logging.getLogger(__name__)

RECEIVING, READY, RUNNING, SENDING, DELIVERED, FAILED, EMPTY = (
    "receiving",
    "ready",
    "running",
    "sending",
    "delivered",
    "failed",
    "empty",
)
#: status -> the statuses it may move to
TRANSITIONS: dict[str, tuple[str, ...]] = {
    RECEIVING: (READY,),
    READY: (RECEIVING, RUNNING),
    RUNNING: (SENDING, FAILED, READY, EMPTY),
    SENDING: (SENDING, DELIVERED, FAILED),
    DELIVERED: (),
    FAILED: (),
    EMPTY: (),
}

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
"""

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

    @property
    def message_list(self) -> list[str]:
        return list(json.loads(self.messages or "[]"))


class JobQueue:
    """The queue on ``path``; safe to share between threads (each gets its own connection)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn().executescript(SCHEMA)  # outside _tx: executescript commits on its own

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
                        "INSERT INTO jobs (study_uid, status, first_arrival, last_arrival) VALUES (?, ?, ?, ?)",
                        (study_uid, RECEIVING, now, now),
                    )
                )
                log.info("job %d: study %s: first instance received", job_id, study_uid)
            else:
                job_id = row["id"]
                if row["status"] == READY:
                    log.info("job %d: study %s: more instances arrived, waiting again", job_id, study_uid)
            db.execute(
                "UPDATE jobs SET status=?, last_arrival=?, instances=instances+1, ready_at=NULL WHERE id=?",
                (RECEIVING, now, job_id),
            )
            db.execute(
                "INSERT INTO series VALUES (?, ?, 1, ?) ON CONFLICT(job_id, series_uid) DO UPDATE "
                "SET instances=instances+1, last_arrival=excluded.last_arrival",
                (job_id, series_uid, now),
            )
        return int(job_id)

    def promote_stable(self, now: float, stable_seconds: float) -> list[int]:
        """Jobs whose study had no new instance for ``stable_seconds``: now ``ready``."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE status=? AND last_arrival <= ?", (RECEIVING, now - stable_seconds)
            ).fetchall()
            db.executemany("UPDATE jobs SET status=?, ready_at=? WHERE id=?", [(READY, now, r["id"]) for r in rows])
        for r in rows:
            log.info("job %d: no new instance for %g s: study complete, ready", r["id"], stable_seconds)
        return [int(r["id"]) for r in rows]

    # --- the worker's side ----------------------------------------------------------------

    def transition(self, job_id: int, to: str, expected: tuple[str, ...] | None = None, **fields: Any) -> bool:
        """Move a job to ``to`` (and set ``fields``) if its status is still one of ``expected``
        (default: any status allowed to move to ``to``); False when it was not."""
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise NodeError(f"job fields {sorted(unknown)} do not exist")
        allowed = expected or tuple(s for s, nxt in TRANSITIONS.items() if to in nxt)
        if any(to not in TRANSITIONS[s] for s in allowed):
            raise NodeError(f"a job cannot move from {allowed} to {to}")
        sets = ", ".join(["status=?"] + [f"{k}=?" for k in fields])
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
        """After a restart: an interrupted segmentation is redone, an interrupted send is due now."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, status FROM jobs WHERE status IN (?, ?, ?)", (READY, RUNNING, SENDING)
            ).fetchall()
            db.execute("UPDATE jobs SET status=? WHERE status=?", (READY, RUNNING))
            db.execute("UPDATE jobs SET next_attempt_at=? WHERE status=?", (now, SENDING))
        for r in rows:
            log.info("job %d: resumed (was %s)", r["id"], r["status"])
        return [int(r["id"]) for r in rows]

    def prunable(self, before: float) -> list[Job]:
        """Delivered jobs whose data is older than ``before`` and still on disk."""
        rows = (
            self._conn()
            .execute("SELECT * FROM jobs WHERE status=? AND pruned=0 AND delivered_at <= ?", (DELIVERED, before))
            .fetchall()
        )
        return [Job(**dict(r)) for r in rows]

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
                    "INSERT INTO jobs (study_uid, status, first_arrival, last_arrival, "
                    "instances) VALUES (?, ?, ?, ?, ?)",
                    (study_uid, RECEIVING, now, now, sum(series_counts.values())),
                )
            )
            db.executemany(
                "INSERT INTO series VALUES (?, ?, ?, ?)", [(job_id, uid, n, now) for uid, n in series_counts.items()]
            )
        log.info(
            "job %d: study %s: %d instance(s) found on disk at start-up", job_id, study_uid, sum(series_counts.values())
        )
        return int(job_id)

    def has_open_job(self, study_uid: str) -> bool:
        row = (
            self._conn()
            .execute("SELECT 1 FROM jobs WHERE study_uid=? AND status IN (?, ?)", (study_uid, RECEIVING, READY))
            .fetchone()
        )
        return row is not None


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
