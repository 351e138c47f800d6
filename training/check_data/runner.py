"""The whole dataset: its cases checked in folder order, in this process or in a pool of
worker processes, then the findings that compare the cases with each other."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import SimpleITK as sitk

from dataset.oar_data import OarTable

from ..progress import each
from .cases import check_case
from .oar_table import load_table, orphan_rows
from .rules import ERROR, WARNING, CaseResult, DatasetResult, Finding, Settings
from .statistics import volume_findings

#: The package's name, as when the check was one module: the progress lines keep their logger.
log = logging.getLogger("training.check_data")


def _worker_init(threads: int) -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    # hanseg logs its repairs and registration outcome itself; here each is a finding already.
    logging.getLogger("hanseg").setLevel(logging.ERROR)


@contextlib.contextmanager
def _quiet_runtime() -> Iterator[None]:
    """hanseg's own log quietened while cases are checked in this process, then as it was."""
    logger = logging.getLogger("hanseg")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_cases(
    folders: Sequence[Path], table: OarTable | None, settings: Settings, workers: int
) -> Iterator[CaseResult]:
    """Each case's result, in folder order whatever the number of worker processes."""
    rows = [None if table is None else table.get(f.name) for f in folders]
    jobs = (folders, rows, [table is not None] * len(folders), [settings] * len(folders))
    if workers <= 1:
        with _quiet_runtime():
            yield from map(check_case, *jobs)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)  # each process its share of ITK's threads
    with ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(threads,)
    ) as pool:
        yield from pool.map(check_case, *jobs)  # map keeps the input order: deterministic output


def _progress(results: Iterator[CaseResult], total: int) -> Iterator[CaseResult]:
    """A tqdm bar when stderr is a terminal, one log line per case otherwise (logs, CI):
    :func:`training.progress.each`, with the case's own seconds and findings in the line."""
    return each(
        results,
        total,
        "checking cases",
        log,
        lambda r, i, _s: (
            f"{r.case_id} checked ({i}/{total}) in {r.summary.get('seconds')} s: "
            f"{r.summary.get('errors')} errors, {r.summary.get('warnings')} warnings"
        ),
    )


def check_dataset(data: Path, settings: Settings, workers: int = 1) -> DatasetResult:
    """Every check over a raw dataset folder: dataset-level findings first, then each case's."""
    folders = sorted(p for p in data.glob("case_*") if p.is_dir())
    table, dataset_level = load_table(data)
    if not folders:
        dataset_level.append(Finding("", "", "layout", ERROR, f"no case_XX folders in {data}: training finds no data"))
    cases = list(_progress(run_cases(folders, table, settings, workers), len(folders)))
    if table is not None:
        dataset_level += orphan_rows(table, [f.name for f in folders])
    per_case = {c.case_id: list(c.findings) for c in cases}
    for finding in volume_findings(cases):
        (per_case[finding.case] if finding.case else dataset_level).append(finding)
    cases = [_with_findings(c, per_case[c.case_id]) for c in cases]
    return DatasetResult(tuple(dataset_level) + tuple(f for c in cases for f in c.findings), tuple(cases))


def _with_findings(case: CaseResult, findings: Sequence[Finding]) -> CaseResult:
    """``case`` with the dataset-level volume findings about it added, and counted in its summary."""
    counts = {s: sum(f.severity == s for f in findings) for s in (ERROR, WARNING)}
    summary = {**case.summary, "errors": counts[ERROR], "warnings": counts[WARNING]}
    return replace(case, findings=tuple(findings), summary=summary)
