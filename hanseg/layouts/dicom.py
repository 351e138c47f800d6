"""The DICOM layout: a folder of DICOM files, as a scanner or PACS export writes them.

Used when the input folder has neither ``inputs.json`` nor ``images/ct/`` and holds DICOM
files (any names, any nesting). Per study, the planning CT and the T1 MR are chosen by the
rules of :mod:`hanseg.dicom.select`, built into volumes (:mod:`hanseg.dicom.volume`) and
segmented on the same code path as the other layouts. Output, per segmented CT series::

    <output>/<StudyInstanceUID>/<CT SeriesInstanceUID>/rtstruct.dcm
    <output>/<StudyInstanceUID>/<CT SeriesInstanceUID>/seg.dcm
    <output>/results.json

and, with ``DicomConfig.qa_dir`` (``process.py --qa DIR``), the QA picture of each result
(:mod:`hanseg.qa_picture`, names and colours as in the RTSTRUCT) at
``<qa_dir>/<StudyInstanceUID>/<CT SeriesInstanceUID>.png``.

``results.json`` has one entry per study: the series used (UIDs), every series skipped and
why, the files written with their UIDs, the structures left empty, and the messages. It
names patients by UID only. An MR that cannot be built into a volume is reported and the
case runs on the CT alone; a CT that cannot be built fails its study only. Both objects of a
study are written, or neither.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk

from .. import __version__
from ..dicom.identity import OutputIdentity, Predecessor, output_identity
from ..dicom.names import Provenance, StructureStyle, default_styles, load_name_map
from ..dicom.rtstruct import build_rtstruct, write_rtstruct
from ..dicom.scan import Instance, Scan, Series, scan_folder
from ..dicom.select import (
    SelectionRules,
    Skipped,
    StudySelection,
    StudyWithoutCt,
    rules_from_json,
    select_studies,
    select_study,
    with_mr_of_same_patient,
)
from ..dicom.volume import read_volume
from ..errors import DicomInputError, DicomSeriesError, HansegError
from ..folders import check_writable
from ..resources import check_volume_fits
from .common import Predictor, case_message, write_json, write_qa

log = logging.getLogger(__name__)

RTSTRUCT_NAME = "rtstruct.dcm"
SEG_NAME = "seg.dcm"


@dataclass(frozen=True)
class DicomConfig:
    """What ``process.py`` and the node pass to the DICOM layout: name map and selection rules
    files (None: the defaults), the provenance written into every output object, the model
    fingerprint the output UIDs are derived from (:mod:`hanseg.dicom.identity`), and, from
    the node, the earlier results that this run's results replace, by CT series UID, and the
    folder of the QA pictures (None: none are drawn; see :func:`qa_path`)."""

    names: Path | None = None
    rules: Path | None = None
    model_version: str = "unversioned"
    model_fingerprint: str = "unknown"
    replaces: Mapping[str, Predecessor] = field(default_factory=dict)
    qa_dir: Path | None = None


def qa_path(qa_dir: Path, study_uid: str, ct_series_uid: str) -> Path:
    """Where the QA picture of a CT series' result goes: ``<qa_dir>/<study UID>/<series UID>.png``."""
    return qa_dir / study_uid / f"{ct_series_uid}.png"


# --- one study ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyVolumes:
    """The volumes of one study, ready for the predictor, and what reading them said."""

    ct: sitk.Image
    ct_instances: tuple[Instance, ...]
    mr: sitk.Image | None
    mr_instances: tuple[Instance, ...]
    warnings: tuple[str, ...]


def _voxels(series: Series) -> int:
    first = series.instances[0]
    return int(first.rows or 0) * int(first.columns or 0) * len(series.instances)


def read_study(selection: StudySelection, rules: SelectionRules) -> StudyVolumes:
    """Build the CT (raises :class:`DicomSeriesError`) and the MR: an MR that cannot be
    built is reported and dropped, since the CT alone still gives a segmentation."""
    check_volume_fits(selection.ct.label, _voxels(selection.ct), sitk.sitkInt16)
    ct, ct_instances = read_volume(selection.ct, rules.axial_tolerance_deg)
    mr, warnings = None, []
    mr_instances: tuple[Instance, ...] = ()
    if selection.mr is not None:
        try:
            mr, mr_instances = read_volume(selection.mr)
        except DicomSeriesError as exc:
            warnings.append(f"the MR is not used, the CT alone is segmented: {exc}")
            log.warning("%s", warnings[-1])
    return StudyVolumes(ct, ct_instances, mr, tuple(mr_instances), tuple(warnings))


def ct_headers(instances: tuple[Instance, ...]) -> list[pydicom.Dataset]:
    """The CT headers in the volume's slice order (the writers pair slice k with header k)."""
    return [pydicom.dcmread(inst.path, stop_before_pixels=True) for inst in instances]


@dataclass(frozen=True)
class Written:
    """The objects written for one CT series, and the structures that came out empty."""

    files: tuple[dict[str, str], ...]
    empty: tuple[str, ...]


def write_objects(
    labels: np.ndarray,
    volumes: StudyVolumes,
    folder: Path,
    styles: tuple[StructureStyle, ...],
    provenance: Provenance,
    identity: OutputIdentity,
    notes: tuple[str, ...] = (),
) -> Written:
    """Build the RTSTRUCT and the SEG first, then write both; a failure leaves neither."""
    # highdicom only here: importing it costs a quarter of a second that the .mha layouts need not pay
    from ..dicom.seg import build_seg, write_seg

    headers = ct_headers(volumes.ct_instances)
    rtstruct, empty = build_rtstruct(labels, volumes.ct, headers, styles, provenance, identity=identity, notes=notes)
    seg = build_seg(labels, headers, styles, provenance, identity=identity)
    folder.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    try:
        done.append(write_rtstruct(rtstruct, folder / RTSTRUCT_NAME))
        done.append(write_seg(seg, folder / SEG_NAME))
    except BaseException:
        for path in done:
            path.unlink(missing_ok=True)
        raise
    earlier = identity.replaces
    replaced = (
        {
            "rtstruct": {
                "replaces_series_uid": earlier.rtstruct_series_uid,
                "replaces_sop_instance_uid": earlier.rtstruct_sop_uid,
            },
            "seg": {"replaces_series_uid": earlier.seg_series_uid, "replaces_sop_instance_uid": earlier.seg_sop_uid},
        }
        if earlier is not None
        else {}
    )
    files = tuple(
        {
            "type": kind,
            "path": str(path),
            "ct_series_uid": str(headers[0].SeriesInstanceUID),
            "series_uid": str(ds.SeriesInstanceUID),
            "sop_instance_uid": str(ds.SOPInstanceUID),
            **replaced.get(kind, {}),
        }
        for kind, path, ds in zip(("rtstruct", "seg"), done, (rtstruct, seg))
    )
    for path in done:
        log.info("wrote %s", path)
    return Written(files, empty)


def _series_entry(role: str, series: Series) -> dict[str, Any]:
    return {
        "role": role,
        "series_uid": series.series_uid,
        "description": series.description,
        "modality": series.modality,
        "files": len(series.instances),
    }


def _skipped_entry(skipped: Skipped) -> dict[str, str]:
    return {
        "series_uid": skipped.series_uid,
        "description": skipped.description,
        "modality": skipped.modality,
        "reason": skipped.reason,
    }


def _entry(
    study_uid: str,
    inputs: list[dict[str, Any]],
    skipped: tuple[Skipped, ...],
    outputs: tuple[dict[str, str], ...] = (),
    empty: tuple[str, ...] = (),
    messages: list[str] | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """A study's entry in results.json: ``error_messages`` say why there is no result,
    ``warnings`` what a person must know about the result that was made."""
    return {
        "study_uid": study_uid,
        "inputs": inputs,
        "outputs": list(outputs),
        "skipped_series": [_skipped_entry(s) for s in skipped],
        "empty_structures": list(empty),
        "warnings": warnings or [],
        "error_messages": messages or [],
    }


def process_selection(
    selection: StudySelection, output_dir: Path, predictor: Predictor, settings: DicomSettings
) -> dict[str, Any]:
    """Segment one study; never raises for bad input, the entry says what went wrong."""
    inputs = [_series_entry("ct", selection.ct)]
    if selection.mr is not None:
        inputs.append(_series_entry("mr", selection.mr))
    try:
        volumes = read_study(selection, settings.rules)
        prediction = predictor.predict(volumes.ct, volumes.mr)
        warnings = list(selection.warnings) + list(volumes.warnings) + list(prediction.warnings)
        folder = output_dir / selection.study_uid / selection.ct.series_uid
        identity = output_identity(
            selection.ct.series_uid,
            (i.sop_uid for i in volumes.ct_instances),
            (i.sop_uid for i in volumes.mr_instances),
            settings.model_fingerprint,
            settings.styles,
            settings.replaces.get(selection.ct.series_uid),
        )
        if identity.replaces is not None and identity.replaces.rtstruct_sop_uid == identity.rtstruct_sop_uid:
            identity = replace(identity, replaces=None)  # the same objects again: nothing is replaced
        written = write_objects(
            np.ascontiguousarray(prediction.labels, np.uint8),
            volumes,
            folder,
            settings.styles,
            settings.provenance,
            identity,
            tuple(warnings),
        )
        if settings.qa_dir is not None:
            write_qa(
                qa_path(settings.qa_dir, selection.study_uid, selection.ct.series_uid),
                f"study {selection.study_uid}",
                volumes.ct,
                prediction,
                volumes.mr,
                title=f"{selection.study_uid} / {selection.ct.series_uid}",
                names={s.label: s.name for s in settings.styles},
                colours={s.label: s.colour for s in settings.styles},
            )
    except (HansegError, ValueError, OSError, MemoryError) as exc:
        message = case_message(f"study {selection.study_uid}", exc)
        log.error("FAILED %s", message)
        return _entry(
            selection.study_uid,
            inputs,
            selection.skipped,
            messages=[message],
            warnings=list(selection.warnings),
        )
    if written.empty:
        log.warning("study %s: empty, not written: %s", selection.study_uid, ", ".join(written.empty))
    return _entry(selection.study_uid, inputs, selection.skipped, written.files, written.empty, warnings=warnings)


# --- the folder ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DicomSettings:
    """The loaded form of :class:`DicomConfig`: checked before any case is read."""

    rules: SelectionRules
    styles: tuple[StructureStyle, ...]
    provenance: Provenance
    model_fingerprint: str = "unknown"
    replaces: Mapping[str, Predecessor] = field(default_factory=dict)
    qa_dir: Path | None = None


def load_settings(config: DicomConfig) -> DicomSettings:
    """Read the rules and the name map (errors name the file) and log the map in use."""
    rules = rules_from_json(config.rules) if config.rules else SelectionRules()
    styles = load_name_map(config.names) if config.names else default_styles()
    if config.names is None:
        log.info("structure names: the %d default names (no --names map given)", len(styles))
    provenance = Provenance(model_version=config.model_version, software_version=__version__)
    return DicomSettings(rules, styles, provenance, config.model_fingerprint, config.replaces, config.qa_dir)


def select_all(
    scan: Scan, rules: SelectionRules
) -> tuple[list[StudySelection], list[dict[str, Any]], list[dict[str, Any]]]:
    """The studies with a CT (each with its T1 MR, perhaps from another study of the patient),
    result entries for the studies that fail (two equal CTs), and the studies without a CT,
    which are reported but are no failure: an MR-only study or a scout is not a case."""
    chosen: list[StudySelection] = []
    failed: list[dict[str, Any]] = []
    without: list[StudyWithoutCt] = []
    for study in scan.studies:
        try:
            result = select_study(study, rules)
        except DicomInputError as exc:
            message = case_message(f"study {study.study_uid}", exc)
            log.error("FAILED %s", message)
            failed.append(_entry(study.study_uid, [], (), messages=[message]))
            continue
        if isinstance(result, StudySelection):
            chosen.append(result)
        else:
            without.append(result)
    chosen = [with_mr_of_same_patient(sel, scan.studies, rules) for sel in chosen]
    used = {sel.mr.study_uid: sel.study_uid for sel in chosen if sel.mr is not None}
    skipped = []
    for no_ct in without:
        reason = (
            f"no CT; its T1 MR is used with study {used[no_ct.study_uid]}"
            if no_ct.study_uid in used
            else "no usable CT series: not segmented"
        )
        log.info("study %s: %s", no_ct.study_uid, reason)
        skipped.append(
            {
                "study_uid": no_ct.study_uid,
                "reason": reason,
                "skipped_series": [_skipped_entry(s) for s in no_ct.skipped],
            }
        )
    return chosen, failed, skipped


def write_results(
    results: list[dict[str, Any]], skipped: list[dict[str, Any]], unreadable: list[dict[str, str]], output_dir: Path
) -> Path:
    return write_json({"studies": results, "studies_without_ct": skipped, "unreadable_files": unreadable}, output_dir)


def run_dicom(input_dir: Path, output_dir: Path, predictor: Predictor, config: DicomConfig = DicomConfig()) -> int:
    """Process every study of a DICOM folder: 0 if each one got its RTSTRUCT and SEG."""
    settings = load_settings(config)
    check_writable(output_dir)
    if config.qa_dir is not None:
        check_writable(config.qa_dir)
    scan = scan_folder(input_dir)
    unreadable = [{"path": str(u.path.relative_to(input_dir)), "reason": u.reason} for u in scan.unreadable]
    chosen, results, skipped = select_all(scan, settings.rules)
    if not chosen:
        write_results(results, skipped, unreadable, output_dir)
        select_studies(scan, settings.rules)  # raises the error that names every series and why
        raise DicomInputError(f"no usable CT series in {input_dir}")
    log.info("%d study(ies) with a CT in %s", len(chosen), input_dir)
    results += [process_selection(sel, output_dir, predictor, settings) for sel in chosen]
    write_results(results, skipped, unreadable, output_dir)
    failed = [r["study_uid"] for r in results if not r["outputs"]]
    if failed:  # each reason was logged once as it happened; this line only counts them
        log.error(
            "%d of %d study(ies) failed (reasons above and in results.json): %s",
            len(failed),
            len(results),
            ", ".join(failed),
        )
    return 1 if failed else 0
