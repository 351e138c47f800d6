"""The outputs of a check: ``findings.csv``, ``cases.csv`` and the summary on the terminal."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

from hanseg.labels import OAR_NAMES

from .rules import ERROR, FINDING_COLUMNS, INFO, SEVERITIES, WARNING, DatasetResult

#: The terminal summary: its own logger and handler (stdout, bare messages), so it reads as a
#: report and is not mixed with the progress lines on stderr. Named as when the check was one module.
summary_log = logging.getLogger("training.check_data.summary")


def write_findings(result: DatasetResult, path: Path) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FINDING_COLUMNS)
        writer.writerows([f.case, f.file, f.check, f.severity, f.message] for f in result.findings)
    return path


def write_cases(result: DatasetResult, path: Path) -> Path:
    columns: list[str] = []
    for case in result.cases:  # first-seen order: the same for every run of the same dataset
        columns += [k for k in case.summary if k not in columns]
    vols = [f"vol_{n}_ml" for n in OAR_NAMES]
    columns = [c for c in columns if c not in vols] + [c for c in vols if c in columns]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(case.summary for case in result.cases)
    return path


def setup_summary_log() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    summary_log.handlers[:] = [handler]  # replaced, not added: main() may run twice in one process
    summary_log.propagate = False
    summary_log.setLevel(logging.INFO)


def log_summary(result: DatasetResult, data: Path, out_dir: Path) -> None:
    counts = {s: result.count(s) for s in SEVERITIES}
    summary_log.info(
        "check_data: %d case(s) in %s: %d error(s), %d warning(s), %d info",
        len(result.cases),
        data,
        counts[ERROR],
        counts[WARNING],
        counts[INFO],
    )
    for severity in (ERROR, WARNING):
        for f in (f for f in result.findings if f.severity == severity):
            where = " ".join(x for x in (f.case, f.file) if x)
            summary_log.info("%-7s %s [%s] %s", severity.upper(), where, f.check, f.message)
    verdict = (
        "errors found: training would fail or learn wrong labels. Fix them, then run this again"
        if counts[ERROR]
        else "no errors: the dataset can be trained on" + (" (read the warnings first)" if counts[WARNING] else "")
    )
    summary_log.info(
        "%s. Tables: %s, %s; QA pictures: %s", verdict, out_dir / "findings.csv", out_dir / "cases.csv", out_dir / "qa"
    )
