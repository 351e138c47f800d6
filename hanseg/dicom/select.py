"""Choose, per study, the planning CT and the T1-weighted MR by written-down rules.

A PACS export of a head-and-neck patient typically holds the planning CT beside its
scout, dose reports, reformats, RT objects and several MR sequences. The rules
(:class:`SelectionRules`, overridable from JSON) are:

* **CT**: Modality CT; ImageType contains ORIGINAL and PRIMARY and none of LOCALIZER,
  DERIVED, SECONDARY; single-frame files; axial (slice normal within
  ``axial_tolerance_deg`` of the patient's z axis; a gantry tilt is caught later by
  :mod:`hanseg.dicom.volume`); at least ``min_ct_slices`` files. Of the candidates the one
  with the most slices wins, then the longer extent along the normal. Two with the same
  slice count and the same extent (typically one scan reconstructed with two kernels) are
  an error naming both: guessing would be silent.
* **MR** (optional; none is fine): Modality MR in the same study (else, with
  ``mr_from_other_studies``, in a study of the same PatientID that has no CT, when that patient
  has one CT study in the folder: a planning MR is often a study of its own), not a localizer or
  derived image, at least ``min_mr_slices`` files. A series is T1 when its
  SeriesDescription or ProtocolName matches ``mr_t1_pattern`` and neither matches
  ``mr_exclude_pattern`` (T2, FLAIR, diffusion, localizers; so a "T1 FLAIR" is excluded).
  Only when both texts are empty do the sequence tags decide: T1 when EchoTime ≤
  ``mr_t1_max_te_ms`` and either RepetitionTime ≤ ``mr_t1_max_tr_ms`` or it is a 3D
  gradient-echo inversion recovery (MPRAGE-like: ScanningSequence GR and IR, 3D). Among T1
  series a 3D acquisition (MRAcquisitionType 3D) wins, then the most slices, then the
  lower SeriesNumber. MR orientation is free (sagittal 3D T1 is common).

Every series not chosen is listed in the result's ``skipped`` with a reason a physicist
reads, and logged at INFO.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DicomInputError
from .scan import Instance, Scan, Series, Study
from .volume import (
    along_normal,
    angle_from_patient_axis_deg,
    orientation_of,
    slice_normal,
    valid_orientation,
)

log = logging.getLogger(__name__)

#: Modalities that carry no image volume of their own (RT objects, reports, segmentations).
NON_IMAGE_MODALITIES = frozenset(
    {"RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "RTIMAGE", "SEG", "REG", "SR", "PR", "KO", "DOC", "PLAN"}
)
#: Two CT extents closer than this (mm) count as the same geometry for a tie.
EXTENT_TIE_MM = 0.5


@dataclass(frozen=True)
class SelectionRules:
    """The settings of the series choice (see the module docstring for how each is used)."""

    min_ct_slices: int = 10
    min_mr_slices: int = 10
    axial_tolerance_deg: float = 10.0
    mr_t1_pattern: str = r"(?<![a-z0-9])t1(?![0-9])|mprage|spgr|bravo"
    mr_exclude_pattern: str = r"t2|flair|stir|dwi|diff|adc|trace|locali[sz]er|scout|survey"
    mr_t1_max_te_ms: float = 30.0
    mr_t1_max_tr_ms: float = 800.0
    #: A study without its own T1 takes one from a CT-less study of the same patient.
    mr_from_other_studies: bool = True


@dataclass(frozen=True)
class Skipped:
    """A series that was not chosen, and why (in words for the log and the report)."""

    series_uid: str
    description: str
    modality: str
    reason: str


@dataclass(frozen=True)
class StudySelection:
    """The CT (and optional T1 MR) chosen in one study, and every other series with why."""

    study_uid: str
    patient_id: str
    ct: Series
    mr: Series | None
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True)
class StudyWithoutCt:
    """A study in which no series qualified as the CT: its series and their reasons."""

    study_uid: str
    patient_id: str
    skipped: tuple[Skipped, ...]


# --- rules from a file --------------------------------------------------------------------


def rules_from_dict(values: dict[str, Any], source: str = "selection rules") -> SelectionRules:
    """Defaults overridden by ``values``; unknown names and bad patterns are errors."""
    fields = {f.name: f for f in dataclasses.fields(SelectionRules)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise DicomInputError(f"{source}: unknown setting(s) {', '.join(unknown)}; known settings: {', '.join(fields)}")
    for name, value in values.items():
        expected = type(fields[name].default)
        # JSON has one number type: a whole number is a fine float; a bool is no number
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or (isinstance(value, bool) and expected is not bool):
            raise DicomInputError(f"{source}: {name} must be a {expected.__name__}, got {value!r}")
    rules = dataclasses.replace(SelectionRules(), **values)
    for name in ("mr_t1_pattern", "mr_exclude_pattern"):
        try:
            re.compile(getattr(rules, name))
        except re.error as exc:
            raise DicomInputError(f"{source}: {name} is not a valid regular expression ({exc})") from exc
    return rules


def rules_from_json(path: Path) -> SelectionRules:
    """:func:`rules_from_dict` of a JSON object file."""
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DicomInputError(f"selection rules {path}: cannot be read as JSON ({exc})") from exc
    if not isinstance(values, dict):
        raise DicomInputError(f"selection rules {path}: expected a JSON object of settings")
    return rules_from_dict(values, f"selection rules {path}")


# --- reasons shared by CT and MR ----------------------------------------------------------


def _skip(series: Series, reason: str) -> Skipped:
    return Skipped(series.series_uid, series.description, series.modality, reason)


def _image_types(series: Series) -> set[str]:
    return {value for inst in series.instances for value in inst.image_type}


def non_image_reason(series: Series) -> str | None:
    """Why the series is no image volume at all, or None."""
    if series.modality in NON_IMAGE_MODALITIES:
        return f"{series.modality}, not an image"
    if series.modality not in ("CT", "MR"):
        return f"{series.modality or 'no modality'}: only CT and MR images are used"
    return None


def common_image_reason(series: Series, min_slices: int) -> str | None:
    """Why a CT or MR series cannot be the chosen volume, or None: localizer, derived,
    multi-frame, no geometry, too few slices."""
    types = _image_types(series)
    if "LOCALIZER" in types:
        return "localizer"
    if "DERIVED" in types:
        return "derived image"
    if "SECONDARY" in types:
        return "secondary capture image"
    frames = max(inst.number_of_frames for inst in series.instances)
    if frames > 1:
        return (
            f"multi-frame (enhanced) image with {frames} frames per file: not supported, "
            "export it as classic single-frame images"
        )
    if any(i.position is None or not valid_orientation(i.orientation) for i in series.instances):
        return "no valid slice position or orientation in its headers"
    if len(series.instances) < min_slices:
        return f"fewer than {min_slices} slices ({len(series.instances)})"
    return None


# --- CT -----------------------------------------------------------------------------------


def ct_reason(series: Series, rules: SelectionRules) -> str | None:
    """Why ``series`` cannot be the CT, or None when it is a candidate."""
    reason = non_image_reason(series)
    if reason or series.modality != "CT":
        return reason or f"{series.modality} image, not a CT"
    types = _image_types(series)
    if "LOCALIZER" not in types and "DERIVED" not in types and not {"ORIGINAL", "PRIMARY"} <= types:
        shown = "\\".join(sorted(types)) or "missing"
        return f"not an ORIGINAL\\PRIMARY image (ImageType {shown})"
    reason = common_image_reason(series, rules.min_ct_slices)
    if reason:
        return reason
    angle = max(angle_from_patient_axis_deg(orientation_of(i)) for i in series.instances)
    if angle > rules.axial_tolerance_deg:
        return f"not axial (normal {angle:.0f}° from the patient axis)"
    return None


def ct_extent_mm(series: Series) -> float:
    """Distance between the outermost slices along the slice normal."""
    normal = slice_normal(orientation_of(series.instances[0]))
    keys = [along_normal(i, normal) for i in series.instances]
    return float(max(keys) - min(keys))


def choose_ct(candidates: list[Series]) -> tuple[Series, list[Skipped]]:
    """The CT with the most slices, then the longest extent; an exact tie is an error."""
    ranked = sorted(candidates, key=lambda s: (len(s.instances), ct_extent_mm(s)), reverse=True)
    best, rest = ranked[0], ranked[1:]
    if (
        rest
        and len(rest[0].instances) == len(best.instances)
        and abs(ct_extent_mm(rest[0]) - ct_extent_mm(best)) < EXTENT_TIE_MM
    ):
        raise DicomInputError(
            f"two CT series in study {best.study_uid} are equally good (same number of slices, "
            f"same extent): {best.label} and {rest[0].label}; remove one of them from the input "
            "(for example keep the soft-tissue reconstruction)"
        )
    skipped = [
        _skip(
            s,
            f"another CT was chosen: {best.label}, with more slices or a longer extent "
            f"({len(best.instances)} vs {len(s.instances)} slices, "
            f"{ct_extent_mm(best):.1f} vs {ct_extent_mm(s):.1f} mm)",
        )
        for s in rest
    ]
    return best, skipped


# --- MR -----------------------------------------------------------------------------------


def _by_sequence_tags(first: Instance, rules: SelectionRules) -> bool:
    """T1 by timing when the series has no description (see the module docstring)."""
    te, tr = first.echo_time, first.repetition_time
    if te is None or te > rules.mr_t1_max_te_ms:
        return False
    mprage_like = {"GR", "IR"} <= set(first.scanning_sequence) and first.mr_acquisition_type == "3D"
    return mprage_like or (tr is not None and tr <= rules.mr_t1_max_tr_ms)


def mr_reason(series: Series, rules: SelectionRules) -> str | None:
    """Why an MR series is not a T1 candidate, or None."""
    reason = common_image_reason(series, rules.min_mr_slices)
    if reason:
        return reason
    first = series.instances[0]
    texts = [t for t in (first.series_description, first.protocol_name) if t]
    for text in texts:
        excluded = re.search(rules.mr_exclude_pattern, text, re.IGNORECASE)
        if excluded:
            return f"a T2/FLAIR/diffusion or localizer series ('{text}' contains '{excluded.group(0)}')"
    if texts:
        if any(re.search(rules.mr_t1_pattern, t, re.IGNORECASE) for t in texts):
            return None
        return f"not recognised as T1 ('{' / '.join(texts)}' does not match the T1 pattern)"
    if _by_sequence_tags(first, rules):
        return None
    return (
        f"no description, and its sequence tags do not look T1 (TE {first.echo_time} ms, "
        f"TR {first.repetition_time} ms, {'/'.join(first.scanning_sequence) or 'no sequence'})"
    )


def choose_mr(candidates: list[Series]) -> tuple[Series | None, list[Skipped]]:
    """3D first, then the most slices, then the lower SeriesNumber, then UID."""
    if not candidates:
        return None, []

    def rank(s: Series) -> tuple[bool, int, int, str]:
        first = s.instances[0]
        number = first.series_number if first.series_number is not None else 1 << 30
        return (first.mr_acquisition_type != "3D", -len(s.instances), number, s.series_uid)

    best, *rest = sorted(candidates, key=rank)
    return best, [_skip(s, f"another MR was chosen: {best.label}") for s in rest]


# --- per study and per folder -------------------------------------------------------------


def select_study(study: Study, rules: SelectionRules) -> StudySelection | StudyWithoutCt:
    """The choice in one study; every series not chosen is in ``skipped`` (logged)."""
    skipped: list[Skipped] = []
    ct_candidates: list[Series] = []
    mr_candidates: list[Series] = []
    for series in study.series:
        is_mr = series.modality == "MR"
        reason = mr_reason(series, rules) if is_mr else ct_reason(series, rules)
        if reason:
            skipped.append(_skip(series, reason))
        else:
            (mr_candidates if is_mr else ct_candidates).append(series)
    ct = None
    if ct_candidates:
        ct, ct_skipped = choose_ct(ct_candidates)
        skipped += ct_skipped
    mr, mr_skipped = choose_mr(mr_candidates)
    skipped += mr_skipped
    for item in skipped:
        log.info(
            "study %s: skipping %s series %s '%s': %s",
            study.study_uid,
            item.modality,
            item.series_uid,
            item.description,
            item.reason,
        )
    if ct is None:
        return StudyWithoutCt(
            study.study_uid,
            study.patient_id,
            tuple(skipped + [_skip(s, "MR without a CT in its study") for s in ([mr] if mr else [])]),
        )
    log.info("study %s: CT %s; MR %s", study.study_uid, ct.label, mr.label if mr else "none")
    return StudySelection(study.study_uid, study.patient_id, ct, mr, tuple(skipped))


def with_mr_of_same_patient(
    selection: StudySelection, studies: tuple[Study, ...], rules: SelectionRules
) -> StudySelection:
    """``selection`` with a T1 MR from another study of the same patient when it has none of
    its own (see the module docstring for when); unchanged otherwise."""
    if selection.mr is not None or not rules.mr_from_other_studies or not selection.patient_id:
        return selection
    mine = [s for s in studies if s.patient_id == selection.patient_id]
    with_ct = [s for s in mine if any(x.modality == "CT" and not ct_reason(x, rules) for x in s.series)]
    if len(with_ct) != 1:
        return selection  # which CT the MR belongs to would be a guess
    candidates = [
        x for s in mine if s is not with_ct[0] for x in s.series if x.modality == "MR" and not mr_reason(x, rules)
    ]
    mr, _ = choose_mr(candidates)
    if mr is None:
        return selection
    log.info(
        "study %s: no T1 MR of its own; using %s of study %s (same patient)",
        selection.study_uid,
        mr.label,
        mr.study_uid,
    )
    return dataclasses.replace(selection, mr=mr)


def scan_summary(scan: Scan) -> str:
    """A one-line inventory for the no-CT error: series by modality and the rejects."""
    if not scan.series:
        return f"no DICOM series ({len(scan.unreadable)} unreadable files)"
    counts = Counter(s.modality or "?" for s in scan.series)
    text = ", ".join(f"{n} {m}" for m, n in sorted(counts.items()))
    if scan.unreadable:
        text += f", {len(scan.unreadable)} unreadable files"
    return text


def select_studies(
    scan: Scan, rules: SelectionRules = SelectionRules()
) -> tuple[tuple[StudySelection, ...], tuple[StudyWithoutCt, ...]]:
    """One :class:`StudySelection` per study with a CT, and the studies without one.

    Raises :class:`DicomInputError` when no study has a CT, listing every series and why
    it was not taken, or when a study holds two equally good CTs.
    """
    results = [select_study(study, rules) for study in scan.studies]
    chosen = tuple(r for r in results if isinstance(r, StudySelection))
    without = tuple(r for r in results if isinstance(r, StudyWithoutCt))
    if not chosen:
        details = "; ".join(
            f"series {s.series_uid} '{s.description}' ({s.modality}): {s.reason}"
            for study in without
            for s in study.skipped
        )
        raise DicomInputError(
            f"no CT series found in {scan.folder}: found {scan_summary(scan)}"
            + (f" ({details})" if details else "")
            + f"; put the axial ORIGINAL\\PRIMARY planning CT (at least {rules.min_ct_slices} "
            "slices, one file per slice) in the input folder"
        )
    for study in without:
        log.warning(
            "study %s of patient %s has no usable CT and is not processed (%d series)",
            study.study_uid,
            study.patient_id,
            len(study.skipped),
        )
    return chosen, without
