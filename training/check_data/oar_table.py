"""``OAR_data.csv``: the table read by OAR name, each case's row against its mask files, rows
without a case folder, and which masks training uses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from dataset.oar_data import FILE_NAME as OAR_DATA_CSV
from dataset.oar_data import OarTable, read_oar_table
from hanseg.errors import HansegError
from hanseg.labels import OAR_NAMES, oar_file_name

from .naming import CaseFiles
from .rules import ERROR, INFO, WARNING, Finding, Findings


def used_masks(files: CaseFiles, row: Mapping[str, float] | None, min_reliability: float) -> list[str]:
    """The OARs whose masks training uses, as :func:`dataset.raw.find_raw_cases` decides: a
    file, and (when the case has a row) a value of at least ``min_reliability``."""
    return [n for n in files.masks if row is None or row.get(n, 1.0) >= min_reliability]


def _csv_finding(oar: str, value: float, has_file: bool, min_reliability: float) -> tuple[str, str] | None:
    """(severity, message) for one OAR's ``OAR_data.csv`` value against its mask file, or None."""
    if has_file and value == 0:
        fate = "leaves the mask out" if value < min_reliability else "still uses it (--min-oar-reliability 0)"
        return WARNING, (
            f"OAR_data.csv says 0 (not annotated) but the mask file exists: training {fate}. Set the "
            "value to 1 if the contour is good, or delete the file"
        )
    if has_file and value < min_reliability:
        return INFO, (
            f"OAR_data.csv rates it {value:g} (not reliably delineated): training leaves it out by "
            f"default (--min-oar-reliability {min_reliability:g}; 0 keeps every mask)"
        )
    if has_file and value < 1:
        return INFO, f"OAR_data.csv rates it {value:g}: kept, --min-oar-reliability is {min_reliability:g}"
    if not has_file and value >= 1:
        return WARNING, (
            "OAR_data.csv says 1 (annotated) but there is no mask file: training treats the OAR as "
            f"not annotated in this case. Add the mask, or set the value to 0 for {oar}"
        )
    return None


def csv_findings(files: CaseFiles, row: Mapping[str, float] | None, min_reliability: float, out: Findings) -> None:
    if row is None:
        out.warning(
            OAR_DATA_CSV,
            "oar_data",
            f"{files.case_id} has no row in {OAR_DATA_CSV}: training uses every "
            "mask file of it as reliably delineated. Add its row",
        )
        return
    for oar in OAR_NAMES:
        if oar not in row:
            continue  # a missing column is reported once for the dataset
        found = _csv_finding(oar, row[oar], oar in files.masks, min_reliability)
        if found:
            out.add(found[0], oar_file_name(files.case_id, oar), "oar_data", found[1])


def load_table(data: Path) -> tuple[OarTable | None, list[Finding]]:
    """``OAR_data.csv`` parsed by OAR name, or None, with what is wrong with it."""
    path = data / OAR_DATA_CSV
    if not path.is_file():
        return None, [
            Finding(
                "",
                OAR_DATA_CSV,
                "oar_data",
                WARNING,
                f"no {OAR_DATA_CSV} in {data}: training uses every mask file as reliably delineated",
            )
        ]
    try:
        table = read_oar_table(path)
    except HansegError as exc:
        return None, [
            Finding(
                "",
                OAR_DATA_CSV,
                "oar_data",
                ERROR,
                f"{exc}: training cannot read the table. Fix it (the download's format: ';', "
                "first header cell empty, one column per OAR by name)",
            )
        ]
    columns = set().union(*table.values()) if table else set()
    missing = [n for n in OAR_NAMES if n not in columns]
    findings = []
    if table and missing:
        findings.append(
            Finding(
                "",
                OAR_DATA_CSV,
                "oar_data",
                WARNING,
                f"no column for {', '.join(missing)}: training treats those OARs as reliable "
                "wherever a mask file exists",
            )
        )
    return table, findings


def orphan_rows(table: OarTable, case_ids: Iterable[str]) -> list[Finding]:
    have = set(case_ids)
    return [
        Finding(
            c,
            OAR_DATA_CSV,
            "oar_data",
            WARNING,
            f"{OAR_DATA_CSV} has a row for {c} but there is no {c} folder: a case is missing "
            "from the download, or the table belongs to another dataset",
        )
        for c in sorted(table)
        if c not in have
    ]
