"""Choose, per study, the planning CT and the T1-weighted MR by written-down rules.

A PACS export of a head-and-neck patient typically holds the planning CT beside its
scout, dose reports, reformats, RT objects and several MR sequences. The rules
(:class:`SelectionRules`, overridable from JSON) are:

* **CT**: Modality CT; not a LOCALIZER nor a MIP/MinIP projection; ImageType values 1 and 2
  (ORIGINAL or DERIVED, PRIMARY or SECONDARY) among ``ct_accepted_image_types`` (all four by
  default); single-frame files; axial (slice normal within ``axial_tolerance_deg`` of the
  patient's z axis; a gantry tilt is caught later by :mod:`hanseg.dicom.volume`); at least
  ``min_ct_slices`` files. An ORIGINAL\\PRIMARY candidate beats every DERIVED or SECONDARY
  one: those are exports and reconstructions (a TPS, an anonymiser, plastimatch write
  DERIVED\\SECONDARY), accepted only when the study has nothing else, and then with a warning
  in the study's results. Within the kind that remains the one with the most slices wins, then
  the longer extent along the normal. Two with the same slice count and the same extent
  (typically one scan reconstructed with two kernels) are an error naming both: guessing would
  be silent.
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
#: ImageType value 1 (how the pixels came to be) and value 2 (from the examination itself or
#: made afterwards): the words ``ct_accepted_image_types`` chooses from.
PIXEL_ORIGINS = ("ORIGINAL", "DERIVED")
EXAMINATION_KINDS = ("PRIMARY", "SECONDARY")
CT_IMAGE_TYPE_WORDS = PIXEL_ORIGINS + EXAMINATION_KINDS
#: ImageType words (value 3 on) of a projection through a slab: the brightest or darkest voxel
#: along a ray, not the CT numbers of one slice, whatever it is derived from.
PROJECTION_WORDS = frozenset({"MIP", "MINIP"})


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
    #: The ImageType words (values 1 and 2) a CT may carry; ``("ORIGINAL", "PRIMARY")`` takes
    #: only the scanner's own reconstruction and refuses exports (see the module docstring).
    ct_accepted_image_types: tuple[str, ...] = CT_IMAGE_TYPE_WORDS


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
    #: What a person must check about the choice (a DERIVED or SECONDARY CT): in results.json.
    warnings: tuple[str, ...] = ()


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
        if name == "ct_accepted_image_types":
            continue  # a list of words, checked on its own below
        expected = type(fields[name].default)
        # JSON has one number type: a whole number is a fine float; a bool is no number
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or (isinstance(value, bool) and expected is not bool):
            raise DicomInputError(f"{source}: {name} must be a {expected.__name__}, got {value!r}")
    if "ct_accepted_image_types" in values:
        values = {**values, "ct_accepted_image_types": _image_type_words(values["ct_accepted_image_types"], source)}
    rules = dataclasses.replace(SelectionRules(), **values)
    for name in ("mr_t1_pattern", "mr_exclude_pattern"):
        try:
            re.compile(getattr(rules, name))
        except re.error as exc:
            raise DicomInputError(f"{source}: {name} is not a valid regular expression ({exc})") from exc
    return rules


def _image_type_words(value: Any, source: str) -> tuple[str, ...]:
    """``ct_accepted_image_types`` from JSON: known words only, and enough to admit a CT."""
    name = "ct_accepted_image_types"
    known = ", ".join(CT_IMAGE_TYPE_WORDS)
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        raise DicomInputError(f"{source}: {name} must be a list of ImageType words ({known}), got {value!r}")
    words = tuple(word.strip().upper() for word in value)
    if "LOCALIZER" in words:
        raise DicomInputError(f"{source}: {name} cannot hold LOCALIZER: a scout view is never a planning CT")
    unknown = [word for word in words if word not in CT_IMAGE_TYPE_WORDS]
    if unknown:
        raise DicomInputError(f"{source}: {name}: unknown ImageType word(s) {', '.join(unknown)}; known words: {known}")
    for value_number, needed in ((1, PIXEL_ORIGINS), (2, EXAMINATION_KINDS)):
        if not set(needed) & set(words):
            raise DicomInputError(
                f"{source}: {name} must name {' or '.join(needed)} (ImageType value {value_number}): "
                "without one no CT could be accepted"
            )
    return words


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
    """Why a CT or MR series cannot be the chosen volume, or None: localizer, multi-frame,
    no geometry, too few slices."""
    if "LOCALIZER" in _image_types(series):
        return "localizer"
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


def image_type_text(series: Series) -> str:
    """The series' ImageType as DICOM writes it (each distinct value list, when they differ)."""
    shown = sorted({"\\".join(inst.image_type) for inst in series.instances})
    return " / ".join(t or "missing" for t in shown)


def ct_kind(series: Series) -> str:
    """ImageType values 1 and 2 of the series, e.g. ``DERIVED\\SECONDARY``; a series whose
    slices differ counts as every word any slice has (``ORIGINAL/DERIVED\\PRIMARY``)."""
    origins = {inst.image_type[0] for inst in series.instances if inst.image_type}
    kinds = {inst.image_type[1] for inst in series.instances if len(inst.image_type) > 1}
    return "\\".join("/".join(sorted(words)) for words in (origins, kinds))


def is_original_primary(series: Series) -> bool:
    """Every slice says ORIGINAL\\PRIMARY: the scanner's own reconstruction."""
    return all(inst.image_type[:2] == ("ORIGINAL", "PRIMARY") for inst in series.instances)


def ct_image_type_reason(series: Series, rules: SelectionRules) -> str | None:
    """Why the ImageType of a CT series rules it out, or None."""
    types = _image_types(series)
    if "LOCALIZER" in types:
        return "localizer"
    projection = sorted(types & PROJECTION_WORDS)
    if projection:
        return (
            f"a {projection[0]} projection (ImageType {image_type_text(series)}): the extreme value "
            "along a slab, not the CT numbers of one slice"
        )
    for inst in series.instances:
        values = inst.image_type
        if len(values) < 2 or values[0] not in PIXEL_ORIGINS or values[1] not in EXAMINATION_KINDS:
            return (
                f"ImageType {image_type_text(series)} does not begin with ORIGINAL or DERIVED, then "
                "PRIMARY or SECONDARY, as a CT image's must"
            )
        refused = [word for word in values[:2] if word not in rules.ct_accepted_image_types]
        if refused:
            return (
                f"a {ct_kind(series)} image (ImageType {image_type_text(series)}); the selection rules "
                f"accept only {', '.join(rules.ct_accepted_image_types)} (ct_accepted_image_types)"
            )
    return None


def ct_reason(series: Series, rules: SelectionRules) -> str | None:
    """Why ``series`` cannot be the CT, or None when it is a candidate."""
    reason = non_image_reason(series)
    if reason or series.modality != "CT":
        return reason or f"{series.modality} image, not a CT"
    reason = ct_image_type_reason(series, rules) or common_image_reason(series, rules.min_ct_slices)
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


def derived_ct_warning(series: Series) -> str:
    """What the results say when the chosen CT is not the scanner's ORIGINAL\\PRIMARY."""
    return (
        f"the CT series {series.series_uid} '{series.description}' is {ct_kind(series)} "
        f"(ImageType {image_type_text(series)}): an export or reconstruction, not the scanner's "
        "original; check it is the planning CT"
    )


def originals_first(candidates: list[Series]) -> tuple[list[Series], list[Series]]:
    """(the candidates to rank, the ones left out): the ORIGINAL\\PRIMARY series when there are
    any, else all; a copy or a reconstruction is used only when the scanner's own is absent."""
    originals = [s for s in candidates if is_original_primary(s)]
    if not originals:
        return candidates, []
    return originals, [s for s in candidates if not is_original_primary(s)]


def _export_skipped(series: Series, chosen: Series) -> Skipped:
    return _skip(
        series,
        f"a {ct_kind(series)} image (ImageType {image_type_text(series)}), an export or reconstruction: "
        f"the ORIGINAL\\PRIMARY CT was chosen, {chosen.label}",
    )


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
    types = _image_types(series)
    # an MR is registered to the CT from its own pixels: a reformat or a copy is refused
    if "LOCALIZER" not in types and "DERIVED" in types:
        return "derived image"
    if "LOCALIZER" not in types and "SECONDARY" in types:
        return "secondary capture image"
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
    warnings: list[str] = []
    if ct_candidates:
        ranked, exports = originals_first(ct_candidates)
        ct, ct_skipped = choose_ct(ranked)
        skipped += [_export_skipped(s, ct) for s in exports] + ct_skipped
        if not is_original_primary(ct):
            warnings.append(derived_ct_warning(ct))
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
    for warning in warnings:
        log.warning("study %s: %s", study.study_uid, warning)
    return StudySelection(study.study_uid, study.patient_id, ct, mr, tuple(skipped), tuple(warnings))


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
            + f"; put the axial planning CT (at least {rules.min_ct_slices} "
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
