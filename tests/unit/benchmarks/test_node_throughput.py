from benchmarks.node_throughput import Sent, study_times, summary, table
from hanseg.node.jobs import DELIVERED, Job


def job(last: float, ready: float, started: float, segmented: float, delivered: float) -> Job:
    return Job(
        1, "1.2.3", DELIVERED, last - 4, last, 300, ready, started, segmented, delivered, 1, None, None, "[]", "[]", 0
    )


def test_the_latency_of_a_study_splits_into_the_silence_and_the_nodes_work():
    sent = Sent("1.2.3", 300, first_sent=96.0, last_acknowledged=100.0)
    # ready when the silence ended (105.1), started once the worker was free (110.0)
    row = study_times(sent, rtstruct_at=160.0, job=job(100.1, 105.1, 110.0, 150.0, 159.5), stable_seconds=5.0)
    assert row["latency_s"] == 60.0 and row["send_study_s"] == 4.0
    assert row["stable_wait_s"] == 5.0 and row["processing_s"] == 55.0
    assert (row["queue_s"], row["segment_s"], row["send_s"]) == (4.9, 40.0, 9.5)


def test_a_job_not_yet_started_leaves_its_parts_unknown():
    unknown = Job(1, "1.2.3", DELIVERED, 0, 1, 3, None, None, None, None, 0, None, None, "[]", "[]", 0)
    row = study_times(Sent("1.2.3", 3, 0.0, 1.0), 10.0, unknown, 2.0)
    assert row["latency_s"] == 9.0 and row["processing_s"] == 7.0
    assert row["queue_s"] is None and row["segment_s"] is None and row["send_s"] is None


def test_studies_per_hour_count_the_run_and_the_capacity_counts_the_worker():
    rows = [
        {"latency_s": 50.0, "processing_s": 45.0, "queue_s": 0.0, "segment_s": 40.0, "send_s": 5.0},
        {"latency_s": 90.0, "processing_s": 85.0, "queue_s": 50.0, "segment_s": 30.0, "send_s": 5.0},
    ]
    s = summary(rows, first_sent=0.0, last_rtstruct=180.0)
    assert s["studies_per_hour"] == 40.0  # 2 studies in 180 s
    assert s["worker_capacity_per_hour"] == 90.0  # 3600 / mean(45, 35)
    assert s["mean_latency_s"] == 70.0 and s["max_latency_s"] == 90.0 and s["mean_queue_s"] == 25.0


def test_the_table_names_the_stable_time_apart():
    row = {"instances": 3, "latency_s": 9.0, "stable_wait_s": 5.0, "processing_s": 4.0}
    row |= {"queue_s": 0.0, "segment_s": 3.0, "send_s": 1.0, "send_study_s": 0.5}
    results = {
        "studies": [row],
        "settings": {"senders": 1, "stable_seconds": 5.0},
        "node_start_s": 7.0,
        "summary": summary([row], 0.0, 10.0),
    }
    text = table(results)
    assert "| 1 | 3 | 9.0 | 5.0 | 4.0 | 0.0 | 3.0 | 1.0 | 0.5 |" in text
    assert "--stable-seconds 5: 360.0 studies/hour" in text
