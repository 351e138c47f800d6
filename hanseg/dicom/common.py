"""What the RTSTRUCT and SEG writers share: the patient and study attributes copied from the
CT, the "not reviewed" wording, and the checked, atomic write of a DICOM file."""

from __future__ import annotations

import logging
import os
import re
import uuid
from datetime import date, time
from pathlib import Path
from typing import TypeGuard

import pydicom
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import MAX_VALUE_LEN, VR_REGEXES, validate_value

log = logging.getLogger(__name__)

#: Patient and study attributes copied from the CT (Type 2: written empty when absent).
PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
UNREVIEWED = "automatic segmentation, not reviewed"


def series_description(model_version: str, replaces: bool) -> str:
    """SeriesDescription of an RTSTRUCT or SEG (LO, at most 64 characters). A result that
    replaces an earlier one for the same CT series says so where a planning system lists it."""
    what = "OARs, replaces earlier result, not reviewed" if replaces else f"OARs {UNREVIEWED}"
    return f"{what}, model {model_version}"[:64]


#: VRs whose values are text with a length limit or a pattern worth checking before writing.
_CHECKED_VRS = frozenset({"AE", "CS", "DA", "DS", "IS", "LO", "LT", "SH", "ST", "TM", "UI"})


def _number_list_pattern(vr: str) -> re.Pattern[str]:
    """pydicom's pattern for one DS/IS value, repeated for backslash-joined values."""
    one = VR_REGEXES[vr].lstrip("^").rstrip("$")
    return re.compile(rf"(?:{one})(?:\\(?:{one}))*")


_NUMBER_LISTS = {vr: _number_list_pattern(vr) for vr in ("DS", "IS")}


def _all_strings(texts: list[str | bytes]) -> TypeGuard[list[str]]:
    return all(isinstance(t, str) for t in texts)


def _check_texts(vr: str, texts: list[str | bytes]) -> None:
    """The values of one element against its VR; DS/IS lists in one regex pass (a large
    ContourData has ~10^5 values and pydicom's validate_value costs ~10 us each)."""
    if vr in _NUMBER_LISTS and _all_strings(texts):
        values = [t for t in texts if t]  # an empty value is allowed, as in pydicom
        if not values:
            return
        too_long = [t for t in values if len(t) > MAX_VALUE_LEN[vr]]
        if too_long or not _NUMBER_LISTS[vr].fullmatch("\\".join(values)):
            bad = too_long[0] if too_long else values
            raise ValueError(f"invalid {vr} value {bad!r:.80} (numbers of at most {MAX_VALUE_LEN[vr]} characters)")
        return
    for text in texts:
        validate_value(vr, text, config.RAISE)


def _written_texts(elem: DataElement) -> list[str | bytes]:
    """What pydicom writes for each value: the original string of DS/IS/DA/TM values when
    there is one; date and time objects are left out (the writer formats them itself)."""
    values = elem.value if isinstance(elem.value, (list, tuple, MultiValue)) else [elem.value]
    texts: list[str | bytes] = []
    for value in values:
        text = getattr(value, "original_string", value)
        if not isinstance(text, (date, time)):
            texts.append(text if isinstance(text, (str, bytes)) else str(text))
    return texts


def check_values(ds: Dataset) -> None:
    """Raise ValueError for any text value that breaks its VR's length or pattern (a DS
    longer than 16 characters, a UID over 64...), including those inside sequences.

    The same checks as pydicom's RAISE validation mode, without changing global settings.
    """
    for elem in ds.iterall():
        if elem.VR in _CHECKED_VRS and elem.value is not None:
            try:
                _check_texts(elem.VR, _written_texts(elem))
            except ValueError as exc:
                raise ValueError(f"{elem.keyword or elem.tag}: {exc}") from exc


def write_dataset_atomic(ds: Dataset, path: Path | str, what: str = "DICOM object") -> Path:
    """Check ``ds`` (:func:`check_values`) and write it as a DICOM file, atomically: to a
    temporary file in the target folder, then renamed, so a receiver never sees half a file."""
    path = Path(path)
    check_values(ds)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.dcm")
    try:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s %s (%d bytes)", what, path, path.stat().st_size)
    return path
