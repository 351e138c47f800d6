"""Where a run's seconds go: one clock per process, one line per step in the log, and a
summary line that ``benchmarks.inference_vs_monai`` reads back, so the time table in
docs/benchmarks.md is printed by the benchmark rather than assembled by hand.

Steps do not nest: each second of a run belongs to one step, so the steps add up to the wall
time (what is left is the interpreter's exit, which no code of this process can time).
The step names, in the order a case goes through them:

* ``python``: from the process's start to ``process.py``'s first line (interpreter, argparse);
* ``imports``: torch, MONAI and the DICOM libraries;
* ``model``: loading the weights and timing the window feeds (:mod:`hanseg.inference`);
* ``read``: the memory check from the header, then the CT and the MR read from disk;
* ``crop``: sanity checks, the body box, the canonical grid, the CT resampled and normalised;
* ``registration``: MR → CT registration, the MR resampled and normalised;
* ``settings``: counting the windows that hold the body, choosing the test-time settings;
* ``network``: inside the network's forward calls only;
* ``sliding-window``: the rest of the sliding window (cutting windows, blending, the air test);
* ``softmax``, ``to-ct-grid`` (:mod:`hanseg.postprocess`), ``coverage``, ``write``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

#: The summary line's prefix: the benchmark finds the line by it.
SUMMARY_PREFIX = "step seconds:"


class StepClock:
    """Seconds per named step, summed over the run (a batch of cases adds up per step)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + seconds
        log.info("step %s: %.2f s", name, seconds)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def summary(self) -> str:
        """One line: :data:`SUMMARY_PREFIX` and the totals as JSON (seconds, 2 decimals)."""
        totals = {k: round(v, 2) for k, v in self.totals.items()}
        return f"{SUMMARY_PREFIX} {json.dumps(totals)} total {sum(self.totals.values()):.1f}"

    def reset(self) -> None:
        self.totals.clear()


#: The process's clock: ``process.py`` logs its summary at the end.
CLOCK = StepClock()
step = CLOCK.step


def parse_summary(log_text: str) -> dict[str, float] | None:
    """The totals of the last summary line in ``log_text``; None when there is none."""
    for line in reversed(log_text.splitlines()):
        _, found, rest = line.partition(SUMMARY_PREFIX)
        if found:
            text = rest.rsplit(" total ", 1)[0]
            return {str(k): float(v) for k, v in json.loads(text).items()}
    return None


def process_age_s(stat: Path = Path("/proc/self/stat"), uptime: Path = Path("/proc/uptime")) -> float | None:
    """Seconds since this process started (Linux: its start time in clock ticks after boot);
    None where ``/proc`` cannot say."""
    try:
        # the command name (field 2) may hold spaces: count fields after its closing bracket
        fields = stat.read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
        return max(0.0, float(uptime.read_text().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return None
