"""The inference benchmark reads ours' step seconds from its log and prints where they went."""

from __future__ import annotations

from benchmarks.inference_vs_monai import step_fields, steps_table
from hanseg.timing import StepClock


def test_steps_come_from_the_log_and_the_rest_is_what_no_step_covers():
    clock = StepClock()
    for name, seconds in (("python", 0.05), ("imports", 1.5), ("network", 10.0), ("write", 0.45)):
        clock.add(name, seconds)
    log = f"2026-12-06 INFO hanseg.timing: step write: 0.45 s\n2026-12-06 INFO process: {clock.summary()}\n"
    fields = step_fields(log, 12.5)
    assert fields["steps"] == {"python": 0.05, "imports": 1.5, "network": 10.0, "write": 0.45}
    assert fields["network_seconds"] == 10.0 and fields["other_seconds"] == 2.5
    assert fields["unaccounted_seconds"] == 0.5
    assert step_fields("no summary: the run failed before it", 3.0) == {}
    table = steps_table(
        {"settings": {}, "cases": {"1024": {"ours": {"seconds": 12.5, "peak_rss_gib": 1.0, "exit_code": 0, **fields}}}}
    )
    rows = table.splitlines()
    assert rows[0] == "| step | 1024 ours |"
    assert "| network | 10.0 |" in rows and "| **all but the network** | 2.5 |" in rows
    assert rows[-1] == "| **wall** | 12.5 |"
