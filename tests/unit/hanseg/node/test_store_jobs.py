"""The node's storage and job queue, exactly: atomic files, statuses, the stability trigger
(an injected clock), and recovery on the same database file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hanseg.node import jobs as J
from hanseg.node.config import Allowed, NodeConfig, Peer, config_from_args
from hanseg.node.errors import InvalidUidError, NodeError, StoreError
from hanseg.node.jobs import JobQueue
from hanseg.node.store import store_instance, sweep, write_atomic
from hanseg.node.worker import backoff

STUDY, SERIES = "1.2.3", "1.2.3.4"


def test_store_writes_the_instance_and_leaves_no_temp_file(tmp_path):
    path = store_instance(tmp_path, STUDY, SERIES, "1.2.3.4.5", b"DICM-bytes")
    assert path == tmp_path / STUDY / SERIES / "1.2.3.4.5.dcm"
    assert path.read_bytes() == b"DICM-bytes"
    assert [p.name for p in path.parent.iterdir()] == ["1.2.3.4.5.dcm"]


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StoreError, match="No space left"):
        store_instance(tmp_path, STUDY, SERIES, "1.2.3.4.5", b"x")
    assert list((tmp_path / STUDY / SERIES).iterdir()) == []


def test_a_uid_that_is_a_path_is_refused(tmp_path):
    with pytest.raises(InvalidUidError):
        store_instance(tmp_path, "../../etc", SERIES, "1.2", b"x")
    assert not any(tmp_path.rglob("*.dcm"))


def test_sweep_removes_leftover_temp_files(tmp_path):
    write_atomic(tmp_path / "a" / "keep.dcm", b"1")
    (tmp_path / "a" / ".tmp-abc").write_bytes(b"half")
    assert sweep(tmp_path) == 1
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["keep.dcm"]


def test_a_study_is_ready_only_after_the_stable_time(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite3")
    job = q.record_arrival(STUDY, SERIES, now=100.0)
    q.record_arrival(STUDY, "1.2.3.9", now=150.0)  # the MR, later: same job
    assert q.promote_stable(now=200.0, stable_seconds=60) == []
    assert q.promote_stable(now=210.0, stable_seconds=60) == [job]
    got = q.get(job)
    assert (got.status, got.instances, got.ready_at) == (J.READY, 2, 210.0)
    assert [s["series_uid"] for s in q.series(job)] == [SERIES, "1.2.3.9"]


def test_an_arrival_reopens_a_ready_job_but_not_a_running_one(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite3")
    job = q.record_arrival(STUDY, SERIES, 0.0)
    q.promote_stable(100.0, 60)
    assert q.record_arrival(STUDY, SERIES, 101.0) == job
    assert q.get(job).status == J.RECEIVING
    q.promote_stable(200.0, 60)
    assert q.transition(job, J.RUNNING, (J.READY,), started_at=201.0)
    second = q.record_arrival(STUDY, SERIES, 202.0)
    assert second != job and q.get(second).status == J.RECEIVING


def test_transitions_follow_the_allowed_order(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite3")
    job = q.record_arrival(STUDY, SERIES, 0.0)
    assert not q.transition(job, J.RUNNING, (J.READY,))  # still receiving
    with pytest.raises(NodeError):
        q.transition(job, J.DELIVERED, (J.RECEIVING,))
    q.promote_stable(100.0, 1)
    for status in (J.RUNNING, J.SENDING, J.DELIVERED):
        assert q.transition(job, status)
    assert not q.transition(job, J.SENDING)  # delivered is final


def test_next_job_prefers_a_due_send(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite3")
    a, b = q.record_arrival("1.1", SERIES, 0.0), q.record_arrival("1.2", SERIES, 0.0)
    q.promote_stable(10.0, 1)
    q.transition(b, J.RUNNING)
    q.transition(b, J.SENDING, next_attempt_at=50.0)
    due, later = q.next_job(20.0), q.next_job(50.0)
    assert due is not None and due.id == a  # the send is not due yet
    assert later is not None and later.id == b


def test_a_new_queue_on_the_same_file_resumes_interrupted_jobs(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite3")
    running, sending = q.record_arrival("1.1", SERIES, 0.0), q.record_arrival("1.2", SERIES, 0.0)
    receiving = q.record_arrival("1.3", SERIES, 5.0)
    q.promote_stable(4.0, 1)
    q.transition(running, J.RUNNING)
    q.transition(sending, J.RUNNING)
    q.transition(sending, J.SENDING, next_attempt_at=999.0)
    q.close()  # as after SIGKILL: nothing else is written
    again = JobQueue(tmp_path / "q.sqlite3")
    assert sorted(again.resume(now=10.0)) == [running, sending]
    assert again.get(running).status == J.READY
    assert (again.get(sending).status, again.get(sending).next_attempt_at) == (J.SENDING, 10.0)
    assert again.get(receiving).status == J.RECEIVING


def test_backoff_doubles_and_is_capped():
    config = NodeConfig("N", 1, Path("/x"), Peer("D", "h", 1), (Allowed("A"),), retry_seconds=60, max_backoff_s=200)
    assert [backoff(config, n) for n in (1, 2, 3, 4)] == [60, 120, 200, 200]


def test_the_command_line_gives_a_frozen_config(tmp_path):
    config = config_from_args(
        [
            "--ae-title",
            "HANSEG",
            "--port",
            "11112",
            "--storage",
            str(tmp_path),
            "--destination",
            "TPS@10.0.0.5:104",
            "--allow",
            "CT1",
            "--allow",
            "PACS@10.0.0.9",
        ]
    )
    assert config.destination == Peer("TPS", "10.0.0.5", 104)
    assert config.allow == (Allowed("CT1"), Allowed("PACS", "10.0.0.9"))
    with pytest.raises(NodeError, match="AET@HOST:PORT"):
        config_from_args(["--ae-title", "H", "--port", "1", "--storage", "s", "--destination", "TPS", "--allow", "A"])


def test_a_restart_starts_the_clock_of_every_unfinished_study_again(tmp_path):
    """Half a study received, the node killed, restarted 10 minutes later: the pre-crash
    silence must not count, since the sender may be waiting to send the rest."""
    q = JobQueue(tmp_path / "q.sqlite3")
    half = q.record_arrival("1.1", SERIES, now=0.0)
    ready = q.record_arrival("1.2", SERIES, now=0.0)
    assert q.promote_stable(now=100.0, stable_seconds=60) == [half, ready]
    later = q.record_arrival("1.1", SERIES, now=101.0)  # the ready study was not complete after all
    assert later == half
    again = JobQueue(tmp_path / "q.sqlite3")
    assert again.resume(now=700.0) == []  # nothing was running or sending
    assert {j.status for j in again.jobs()} == {J.RECEIVING}
    assert again.promote_stable(now=759.0, stable_seconds=60) == []
    assert again.promote_stable(now=760.0, stable_seconds=60) == [half, ready]
    assert again.get(half).last_arrival == 101.0  # the audit keeps the real arrival time


def test_an_older_queue_database_gets_the_new_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:  # the first release's jobs table
        conn.execute(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, study_uid TEXT NOT NULL, status TEXT NOT NULL, "
            "first_arrival REAL NOT NULL, last_arrival REAL NOT NULL, instances INTEGER NOT NULL DEFAULT 0, "
            "ready_at REAL, started_at REAL, segmented_at REAL, delivered_at REAL, attempts INTEGER NOT NULL "
            "DEFAULT 0, next_attempt_at REAL, reason TEXT, messages TEXT NOT NULL DEFAULT '[]', outputs TEXT NOT "
            "NULL DEFAULT '[]', pruned INTEGER NOT NULL DEFAULT 0)"
        )
        conn.execute(
            "INSERT INTO jobs (study_uid, status, first_arrival, last_arrival) VALUES ('1.1', 'receiving', 0, 0)"
        )
    q = JobQueue(path)
    assert q.get(1).warning_list == [] and q.get(1).settle_from is None
    assert q.promote_stable(now=61.0, stable_seconds=60) == [1]  # no settle_from: the last arrival counts


def test_force_complete_moves_only_a_receiving_job(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite3")
    job = q.record_arrival(STUDY, SERIES, now=0.0)
    assert q.force_complete(job, now=1.0) and q.get(job).status == J.READY
    q.transition(job, J.RUNNING)
    assert not q.force_complete(job, now=2.0)


def test_a_failed_job_may_only_be_requeued_and_a_delivered_one_never_moves(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite3")
    job = q.record_arrival(STUDY, SERIES, now=0.0)
    q.force_complete(job, now=1.0)
    q.transition(job, J.RUNNING)
    q.transition(job, J.FAILED)
    assert not q.transition(job, J.DELIVERED)  # only a job being sent can be delivered
    with pytest.raises(NodeError):
        q.transition(job, J.DELIVERED, (J.FAILED,))
    assert q.get(job).status == J.FAILED
    assert q.transition(job, J.READY) and q.get(job).status == J.READY
    q.transition(job, J.RUNNING)
    q.transition(job, J.SENDING)
    q.transition(job, J.DELIVERED)
    for to in (J.READY, J.SENDING, J.FAILED):
        with pytest.raises(NodeError):
            q.transition(job, to, (J.DELIVERED,))
