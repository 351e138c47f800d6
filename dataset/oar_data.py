"""``OAR_data.csv``: which OARs each case of the HaN-Seg download annotates, and how reliably.

The real file is semicolon-separated, its first header cell is empty, its columns come in their
own order (not the label order), four of them use other names for the eyes (``Eye_L``,
``Eye_R``, ``Lens_L``, ``Lens_R``; see :data:`hanseg.labels.OAR_DATA_CSV_NAMES`), and its
values are 1, 0.5 or 0 (case_19: the brainstem, optic nerves and pituitary 0.5, the chiasm 0).
What 0.5 means is not written down; a value below 1 is read as "not reliably delineated".
Columns are always found by name, never by position: public loaders that counted positions
shifted every later label.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

from hanseg.errors import InputLayoutError
from hanseg.labels import OAR_DATA_CSV_NAMES, OAR_DATA_CSV_ORDER, OAR_NAMES

FILE_NAME = "OAR_data.csv"
DELIMITER = ";"
#: CSV column name → OAR name (mask files and label ids use the OAR names).
CSV_TO_OAR: Mapping[str, str] = {OAR_DATA_CSV_NAMES.get(n, n): n for n in OAR_NAMES}

#: case id → OAR name → value (1 annotated, 0.5 unreliable, 0 not annotated).
OarTable = dict[str, dict[str, float]]


def _delimiter(header: str) -> str:
    """``;`` as in the download; ``,`` for a table written by a spreadsheet or an older tool."""
    return DELIMITER if header.count(DELIMITER) >= header.count(",") else ","


def _oar_columns(header: list[str], path: Path) -> list[str]:
    """The OAR name of every column after the first (the case id), by name."""
    names = [h.strip() for h in header[1:]]
    unknown = [n for n in names if n not in CSV_TO_OAR and n not in OAR_NAMES]
    if unknown:
        raise InputLayoutError(
            f"{path.name}: unknown OAR column(s) {', '.join(unknown)}; expected the names "
            f"of the HaN-Seg download ({', '.join(CSV_TO_OAR)})"
        )
    return [CSV_TO_OAR.get(n, n) for n in names]


def _value(text: str, where: str) -> float:
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError as exc:
        raise InputLayoutError(f"{where}: {text!r} is not a number") from exc
    if not 0.0 <= value <= 1.0:
        raise InputLayoutError(f"{where}: {value:g} is outside 0..1")
    return value


def read_oar_table(path: Path) -> OarTable:
    """Parse ``OAR_data.csv`` (the download's format; see the module docstring) by OAR name."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    if not lines:
        raise InputLayoutError(f"{path.name} is empty")
    rows = list(csv.reader(io.StringIO(text), delimiter=_delimiter(lines[0])))
    oars = _oar_columns(rows[0], path)
    table: OarTable = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        if len(row) != len(oars) + 1:
            raise InputLayoutError(f"{path.name} line {number}: {len(row) - 1} values for {len(oars)} OAR columns")
        case = row[0].strip()
        table[case] = {oar: _value(v, f"{path.name} line {number}, {oar}") for oar, v in zip(oars, row[1:])}
    return table


def format_value(value: float) -> str:
    """1 and 0 as the download writes them; other values with as few digits as they need."""
    return f"{value:g}"


def write_oar_table(table: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """Inverse of :func:`read_oar_table`: the download's format (``;``, empty first header
    cell, its column order and eye names, one row per case in sorted order). An OAR a row
    does not mention is written as 0. Written to a temporary name, then renamed."""
    path = Path(path)
    header = ["", *(OAR_DATA_CSV_NAMES.get(n, n) for n in OAR_DATA_CSV_ORDER)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=DELIMITER, lineterminator="\n")
    writer.writerow(header)
    for case in sorted(table):
        writer.writerow([case, *(format_value(table[case].get(n, 0.0)) for n in OAR_DATA_CSV_ORDER)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buffer.getvalue())
    tmp.replace(path)
    return path
