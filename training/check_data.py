"""``python -m training.check_data``: check a HaN-Seg raw dataset before training on it.

What nnU-Net's ``--verify_dataset_integrity`` does, for this data: every problem that would
break training, or silently teach it wrong labels, is found before hours of GPU time are spent.

    python -m training.check_data --data DIR [--out DIR] [--no-registration] [--workers N]

``DIR`` holds the download's raw layout (``case_XX/case_XX_IMG_CT.nrrd``, ``case_XX_IMG_MR_T1.nrrd``,
``case_XX_OAR_<name>.seg.nrrd`` and ``OAR_data.csv``; see :mod:`dataset.raw`). Per case: the CT
and MR headers and value ranges (raw CT values, the MR's +32768 storage offset), every mask's
header against the CT grid (cheap: no voxels decompressed), mask values, empty masks, voxels
claimed by two OARs and which one the label map gives them to, mask files against
``OAR_data.csv`` (by OAR name), unknown OAR file names, the MR registration and each OAR's
volume. Over the dataset: volumes against :data:`dataset.volumes.TYPICAL_VOLUME_ML` and against
the other cases (robust outliers, a jump between the first and second half of the cases).

Output in ``--out`` (default ``check_data/``): ``findings.csv`` (case, file, check, severity,
message: one row per finding), ``cases.csv`` (one row per case: sizes, spacings, types, ranges,
registration figures, volumes) and ``qa/<case>.png`` (the CT with the label map training would
use). A summary goes to the terminal. Exit code 1 when anything would break or corrupt training
(severity ``error``), 0 otherwise (warnings are for a person to read), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import logging
import multiprocessing as mp
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from dataset.oar_data import FILE_NAME as OAR_DATA_CSV
from dataset.oar_data import OarTable, read_oar_table
from dataset.raw import paint
from dataset.volumes import TYPICAL_VOLUME_ML
from hanseg.checks import check_direction, mr_intensity_offset, sanitize_ct, sanitize_mr
from hanseg.errors import HansegError, ImageReadError, InvalidImageError
from hanseg.io import read_error, read_image
from hanseg.labels import LABEL_IDS, OAR_NAMES, oar_file_name
from hanseg.plans import DEFAULT_BODY_THRESHOLD_HU
from hanseg.preprocess import crop_boxes

log = logging.getLogger(__name__)
#: The terminal summary: its own logger and handler (stdout, bare messages), so it reads as a
#: report and is not mixed with the progress lines on stderr.
summary_log = logging.getLogger(__name__ + ".summary")

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)
FINDING_COLUMNS = ("case", "file", "check", "severity", "message")

#: A head CT in HU always holds air (-1000); the lowest value a scanner writes is its padding
#: outside the reconstruction circle (-1024, some -2048 or -3024): anything lower is not HU.
HU_LOWEST = -3100.0
#: Bone reaches ~3000 HU; 12-bit scanners clip at 3071, extended scales for dental metal go
#: higher, so beyond this is worth a look (a warning), not an error.
HU_HIGHEST = 6000.0
#: Within-dataset volume statistics need enough cases to mean anything.
MIN_CASES_FOR_STATS = 5
#: Robust outlier rule: beyond this many MADs (scaled to a normal SD, see robust_outliers).
OUTLIER_MADS = 3.0
#: MAD -> standard deviation of a normal distribution. Unscaled, "3 MADs" is only ~2 SD and
#: would flag ~5 % of all volumes of a healthy dataset (about 60 warnings on 42 x 30 OARs).
MAD_TO_SD = 1.4826
#: Median volume ratio between the second and first half of the cases that counts as a drift
#: (the HaN-Seg cochleae: about 2).
DRIFT_RATIO = 1.6
#: Registration works on the CT body box with this margin (as preprocessing does).
BODY_MARGIN_MM = 10.0


@dataclass(frozen=True)
class Finding:
    case: str  # case id; "" for the dataset as a whole
    file: str  # the file concerned (its expected name when it is missing); "" for none
    check: str  # layout, oar_data, unknown_oar, ct, mr, grid, mask_values, empty_mask, overlap, ...
    severity: str  # error (breaks or corrupts training), warning (read it), info
    message: str


@dataclass(frozen=True)
class Settings:
    registration: bool = True
    min_reliability: float = 1.0  # as training's --min-oar-reliability: lower-rated masks are left out
    grid_tol_mm: float = 1e-3
    body_threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU
    qa_dir: Path | None = None  # where the QA overlays go; None draws none


@dataclass(frozen=True)
class ImageInfo:
    """An image file's header, read without its voxels."""

    file: str
    dimension: int
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    pixel_type: str
    components: int


@dataclass(frozen=True)
class CaseFiles:
    case_id: str
    folder: Path
    ct: Path | None
    mr: Path | None
    masks: dict[str, Path]  # known OAR name -> file, in label order
    unknown: tuple[str, ...]  # *.seg.nrrd files with no known OAR name
    other: tuple[str, ...]  # files training never reads


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    findings: tuple[Finding, ...]
    summary: Mapping[str, object]  # one row of cases.csv
    volumes_ml: Mapping[str, float]  # OAR -> mL, every readable mask


@dataclass(frozen=True)
class DatasetResult:
    findings: tuple[Finding, ...]  # dataset-level first, then case by case
    cases: tuple[CaseResult, ...]

    def count(self, severity: str) -> int:
        return sum(f.severity == severity for f in self.findings)


@dataclass
class Findings:
    """Collects one case's findings in the order they are found (mutable on purpose: an
    accumulator passed down the checks; the findings themselves are frozen)."""

    case: str
    items: list[Finding] = field(default_factory=list)

    def add(self, severity: str, file: str, check: str, message: str) -> None:
        self.items.append(Finding(self.case, file, check, severity, message))

    def error(self, file: str, check: str, message: str) -> None:
        self.add(ERROR, file, check, message)

    def warning(self, file: str, check: str, message: str) -> None:
        self.add(WARNING, file, check, message)

    def info(self, file: str, check: str, message: str) -> None:
        self.add(INFO, file, check, message)


# ---------------------------------------------------------------------------------- files


def case_files(folder: Path) -> CaseFiles:
    """What a case folder holds, by the names training looks for (:mod:`dataset.raw`)."""
    cid = folder.name
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    ct, mr = f"{cid}_IMG_CT.nrrd", f"{cid}_IMG_MR_T1.nrrd"
    masks = {n: folder / oar_file_name(cid, n) for n in OAR_NAMES if oar_file_name(cid, n) in names}
    known = {ct, mr, *(p.name for p in masks.values())}
    unknown = tuple(n for n in names if n.endswith(".seg.nrrd") and n not in known)
    other = tuple(n for n in names if n not in known and n not in unknown)
    return CaseFiles(cid, folder, folder / ct if ct in names else None, folder / mr if mr in names else None,
                     masks, unknown, other)


def _unknown_name_message(name: str, cid: str) -> str:
    prefix = f"{cid}_OAR_"
    if not name.startswith(prefix):
        return (f"a mask file that does not follow {prefix}<OAR>.seg.nrrd (another case's file, or renamed?): "
                "training never reads it. Move it to its own case folder or rename it")
    oar = name[len(prefix):-len(".seg.nrrd")]
    close = difflib.get_close_matches(oar, OAR_NAMES, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (f"'{oar}' is not one of the 30 HaN-Seg OAR names{hint}: training ignores this file and treats the "
            f"OAR as not annotated in {cid}, so its voxels are silently lost. Rename the file to "
            f"{prefix}<name>.seg.nrrd with a name from hanseg.labels.OAR_NAMES")


def naming_findings(files: CaseFiles, out: Findings) -> None:
    for name in files.unknown:
        out.error(name, "unknown_oar", _unknown_name_message(name, files.case_id))
    for name in files.other:
        out.info(name, "layout", "not a file training reads (ignored)")
    if files.ct is None:
        out.error(f"{files.case_id}_IMG_CT.nrrd", "layout",
                  f"{files.case_id} has no CT: training skips the whole case and its masks. Add the CT under "
                  "this exact name, or remove the folder from the dataset")
    if files.mr is None:
        out.warning(f"{files.case_id}_IMG_MR_T1.nrrd", "layout",
                    "no T1 MR: this case trains from the CT alone (MR channel zero). Add the MR if there is one")


# ------------------------------------------------------------------------------- OAR_data.csv


def used_masks(files: CaseFiles, row: Mapping[str, float] | None, min_reliability: float) -> list[str]:
    """The OARs whose masks training uses, as :func:`dataset.raw.find_raw_cases` decides: a
    file, and (when the case has a row) a value of at least ``min_reliability``."""
    return [n for n in files.masks if row is None or row.get(n, 1.0) >= min_reliability]


def _csv_finding(oar: str, value: float, has_file: bool, min_reliability: float) -> tuple[str, str] | None:
    """(severity, message) for one OAR's ``OAR_data.csv`` value against its mask file, or None."""
    if has_file and value == 0:
        fate = "leaves the mask out" if value < min_reliability else "still uses it (--min-oar-reliability 0)"
        return WARNING, (f"OAR_data.csv says 0 (not annotated) but the mask file exists: training {fate}. Set the "
                         "value to 1 if the contour is good, or delete the file")
    if has_file and value < min_reliability:
        return INFO, (f"OAR_data.csv rates it {value:g} (not reliably delineated): training leaves it out by "
                      f"default (--min-oar-reliability {min_reliability:g}; 0 keeps every mask)")
    if has_file and value < 1:
        return INFO, f"OAR_data.csv rates it {value:g}: kept, --min-oar-reliability is {min_reliability:g}"
    if not has_file and value >= 1:
        return WARNING, ("OAR_data.csv says 1 (annotated) but there is no mask file: training treats the OAR as "
                         f"not annotated in this case. Add the mask, or set the value to 0 for {oar}")
    return None


def csv_findings(files: CaseFiles, row: Mapping[str, float] | None, min_reliability: float,
                 out: Findings) -> None:
    if row is None:
        out.warning(OAR_DATA_CSV, "oar_data", f"{files.case_id} has no row in {OAR_DATA_CSV}: training uses every "
                    "mask file of it as reliably delineated. Add its row")
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
        return None, [Finding("", OAR_DATA_CSV, "oar_data", WARNING,
                              f"no {OAR_DATA_CSV} in {data}: training uses every mask file as reliably delineated")]
    try:
        table = read_oar_table(path)
    except HansegError as exc:
        return None, [Finding("", OAR_DATA_CSV, "oar_data", ERROR,
                              f"{exc}: training cannot read the table. Fix it (the download's format: ';', "
                              "first header cell empty, one column per OAR by name)")]
    columns = set().union(*table.values()) if table else set()
    missing = [n for n in OAR_NAMES if n not in columns]
    findings = []
    if table and missing:
        findings.append(Finding("", OAR_DATA_CSV, "oar_data", WARNING,
                                f"no column for {', '.join(missing)}: training treats those OARs as reliable "
                                "wherever a mask file exists"))
    return table, findings


def orphan_rows(table: OarTable, case_ids: Iterable[str]) -> list[Finding]:
    have = set(case_ids)
    return [Finding(c, OAR_DATA_CSV, "oar_data", WARNING,
                    f"{OAR_DATA_CSV} has a row for {c} but there is no {c} folder: a case is missing "
                    "from the download, or the table belongs to another dataset")
            for c in sorted(table) if c not in have]


# ------------------------------------------------------------------------------ headers


def read_header(path: Path) -> ImageInfo:
    """The header of an image file (no voxels are read); :class:`ImageReadError` if unreadable."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        raise read_error(path, exc) from exc
    return ImageInfo(path.name, reader.GetDimension(), tuple(reader.GetSize()), tuple(reader.GetSpacing()),
                     tuple(reader.GetOrigin()), tuple(reader.GetDirection()),
                     sitk.GetPixelIDValueAsString(reader.GetPixelID()), reader.GetNumberOfComponents())


def _fmt(values: Sequence[float], digits: int = 3) -> str:
    return "(" + ", ".join(f"{v:.{digits}f}" for v in values) + ")"


def grid_differences(mask: ImageInfo, ct: ImageInfo, tol_mm: float) -> list[str]:
    """Each header field in which ``mask`` is off the CT grid, with both values."""
    if mask.dimension != ct.dimension or mask.components != 1:
        return [f"dimension {mask.dimension}D with {mask.components} component(s), CT {ct.dimension}D scalar"]
    out = []
    if mask.size != ct.size:
        out.append(f"size {'x'.join(map(str, mask.size))} vs CT {'x'.join(map(str, ct.size))}")
    for name, a, b in (("spacing", mask.spacing, ct.spacing), ("origin", mask.origin, ct.origin)):
        off = float(np.max(np.abs(np.subtract(a, b))))
        if off > tol_mm:
            out.append(f"{name} {_fmt(a)} mm vs CT {_fmt(b)} mm (off by {off:.3f} mm)")
    if float(np.max(np.abs(np.subtract(mask.direction, ct.direction)))) > tol_mm:
        out.append(f"direction {_fmt(mask.direction, 4)} vs CT {_fmt(ct.direction, 4)}")
    return out


def _describe(info: ImageInfo, lo: float, hi: float) -> str:
    return (f"{'x'.join(map(str, info.size))} voxels at {'x'.join(f'{s:.3f}' for s in info.spacing)} mm, "
            f"{info.pixel_type}, values {lo:g}..{hi:g}")


def _image_summary(prefix: str, info: ImageInfo, lo: float, hi: float) -> dict[str, object]:
    return {f"{prefix}_size": "x".join(map(str, info.size)),
            f"{prefix}_spacing_mm": "x".join(f"{s:.4f}" for s in info.spacing),
            f"{prefix}_origin_mm": " ".join(f"{v:.2f}" for v in info.origin),
            f"{prefix}_type": info.pixel_type, f"{prefix}_min": float(f"{lo:.6g}"), f"{prefix}_max": float(f"{hi:.6g}")}


# ------------------------------------------------------------------------------ CT and MR


def value_range(image: sitk.Image) -> tuple[float, float, int]:
    """(min, max, number of NaN/inf voxels) of an image; the count is 0 for integer types."""
    arr = sitk.GetArrayViewFromImage(image)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        bad = int(arr.size - np.count_nonzero(finite))
        if bad:
            return (float(arr[finite].min()), float(arr[finite].max()), bad) if bad < arr.size else (0.0, 0.0, bad)
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    return stats.GetMinimum(), stats.GetMaximum(), 0


def ct_findings(ct: sitk.Image, lo: float, hi: float, file: str, out: Findings) -> None:
    if lo >= 0:
        out.warning(file, "ct", f"CT values {lo:g}..{hi:g} have nothing below 0, so they are not Hounsfield units "
                    "(raw scanner values): training subtracts 1024 (hanseg.checks.sanitize_ct). Check that this "
                    "scanner's offset is 1024, or convert the CT to HU")
    elif lo < HU_LOWEST or hi > HU_HIGHEST:
        out.warning(file, "ct", f"CT values {lo:g}..{hi:g} lie far outside -1024..~4000 HU: check the rescale "
                    "slope/intercept of the conversion (metal on an extended HU scale can also do this)")
    for message in check_direction(ct, "CT"):
        out.warning(file, "ct", message)


def mr_findings(mr: sitk.Image, lo: float, hi: float, file: str, out: Findings) -> float:
    """Warnings about the MR's values; returns its storage offset (0 if none)."""
    offset = mr_intensity_offset(mr)
    if offset:
        out.warning(file, "mr", f"MR values {lo:g}..{hi:g}: stored as unsigned 16-bit with a +{offset:g} offset. "
                    "Training and inference subtract it (hanseg.checks.sanitize_mr), nothing to do here; other "
                    "tools reading this file see a wrong background")
    for message in check_direction(mr, "MR"):
        out.warning(file, "mr", message)
    return offset


def _load(path: Path, what: str, out: Findings) -> tuple[ImageInfo, sitk.Image, float, float] | None:
    """Header, voxels and value range of a CT or MR; None (with an error) if unreadable."""
    try:
        info = read_header(path)
        image = read_image(path)
    except (ImageReadError, InvalidImageError) as exc:
        out.error(path.name, "unreadable", f"{exc}: training stops at this file. Re-export it as a 3D "
                  "scalar NRRD")
        return None
    lo, hi, non_finite = value_range(image)
    if non_finite:
        out.warning(path.name, what, f"{non_finite} NaN/inf voxels: training replaces them (air in the CT, 0 in "
                    "the MR); check the conversion that wrote them")
    out.info(path.name, what, f"{what.upper()} {_describe(info, lo, hi)}")
    return info, image, lo, hi


# ---------------------------------------------------------------------------------- masks


@dataclass
class LabelPainter:
    """The label map training builds (:func:`dataset.raw.paint`: the higher id wins), with the
    voxels each OAR lost to a later one counted on the way (mutable: it is the work array)."""

    labels: np.ndarray  # z, y, x uint8
    overlaps: Counter = field(default_factory=Counter)  # (loser, winner) -> voxels

    def paint(self, oar: str, indices: np.ndarray) -> None:
        for loser, voxels in paint(self.labels, indices, oar).items():
            self.overlaps[(loser, oar)] += voxels


def _occupied_slices(arr: np.ndarray) -> tuple[int, int]:
    """(first, last + 1) z slice holding a nonzero voxel; (0, 0) for an empty mask. A per-slice
    maximum is a vectorised scan without temporaries, several times faster than ``nonzero``."""
    planes = arr.reshape(arr.shape[0], -1)
    busy = planes.max(axis=1) > 0 if arr.dtype.kind == "u" else (planes != 0).any(axis=1)
    z = np.flatnonzero(busy)
    return (int(z[0]), int(z[-1]) + 1) if z.size else (0, 0)


def mask_voxels(mask: sitk.Image) -> tuple[np.ndarray, list[float]]:
    """(flat indices of the voxels > 0, the distinct values found). Only the slices an OAR
    occupies are searched and only its nonzero voxels sorted: a 200 M voxel mask costs a
    fraction of a second, not a full ``np.unique``."""
    arr = sitk.GetArrayViewFromImage(mask)
    z0, z1 = _occupied_slices(arr)
    plane = arr[0].size
    slab = arr[z0:z1].reshape(-1)
    nonzero = np.flatnonzero(slab)
    values = slab[nonzero]
    distinct = sorted({float(v) for v in np.unique(values)} | ({0.0} if nonzero.size < arr.size else set()))
    return nonzero[values > 0] + z0 * plane, distinct


def _values_finding(file: str, distinct: list[float], out: Findings) -> None:
    if set(distinct) <= {0.0, 1.0}:
        return
    shown = ", ".join(f"{v:g}" for v in distinct[:10]) + (", ..." if len(distinct) > 10 else "")
    out.error(file, "mask_values", f"mask values {shown}, expected only 0 and 1: training reads every value above "
              "0 as the OAR (a soft or label-map export?). Re-export as a binary 0/1 mask")


def _grid_ok(path: Path, ct: ImageInfo, tol_mm: float, out: Findings) -> bool:
    diffs = grid_differences(read_header(path), ct, tol_mm)
    if diffs:
        out.error(path.name, "grid", f"not on the CT grid ({ct.file}): {'; '.join(diffs)}. Training stops at this "
                  "file (a mask is never resampled: a shifted mask would teach the contour in the wrong place). "
                  "Re-export the mask on the CT's grid")
    return not diffs


def check_mask(oar: str, path: Path, ct: ImageInfo, settings: Settings, out: Findings
               ) -> tuple[np.ndarray | None, float | None]:
    """(voxel indices to paint if the mask is on the grid, volume in mL) of one mask file;
    (None, None) when it cannot be read."""
    try:
        on_grid = _grid_ok(path, ct, settings.grid_tol_mm, out)
        mask = read_image(path)
    except (ImageReadError, InvalidImageError) as exc:
        out.error(path.name, "unreadable", f"{exc}: training stops at this file. Re-export it")
        return None, None
    indices, distinct = mask_voxels(mask)
    _values_finding(path.name, distinct, out)
    if mask.GetPixelID() != sitk.sitkUInt8:
        out.info(path.name, "mask_values", f"stored as {mask.GetPixelIDTypeAsString()} (the download uses "
                 "unsigned char): fine for training, 8 bits would be smaller")
    ml = indices.size * float(np.prod(mask.GetSpacing())) * abs(float(np.linalg.det(
        np.reshape(mask.GetDirection(), (3, 3))))) / 1000.0
    if indices.size == 0:
        out.warning(path.name, "empty_mask", f"the {oar} mask is empty: training learns that this case has no "
                    f"{oar} at all. Contour it, or delete the file and set {OAR_DATA_CSV} to 0")
    return (indices if on_grid else None), ml


def overlap_findings(files: CaseFiles, overlaps: Mapping[tuple[str, str], int], voxel_ml: float,
                     out: Findings) -> None:
    for (loser, winner), n in sorted(overlaps.items(), key=lambda kv: (LABEL_IDS[kv[0][0]], LABEL_IDS[kv[0][1]])):
        out.warning(files.masks[loser].name, "overlap",
                    f"{n} voxels ({n * voxel_ml:.3f} mL) are in both {loser} and {winner}: the label map gives "
                    f"them to {winner} (label {LABEL_IDS[winner]} > {LABEL_IDS[loser]}: the higher id wins), "
                    f"so {loser} loses them. Trim one contour if that is wrong")


def masks_pass(files: CaseFiles, ct: ImageInfo, used: Sequence[str], settings: Settings,
               out: Findings) -> tuple[np.ndarray, dict[str, float]]:
    """Every mask checked, and the label map training would use painted from the ``used``
    ones that are on the grid; returns it and each readable mask's volume (mL)."""
    painter = LabelPainter(np.zeros(ct.size[::-1], np.uint8))
    volumes: dict[str, float] = {}
    for oar, path in files.masks.items():
        indices, ml = check_mask(oar, path, ct, settings, out)
        if ml is not None:
            volumes[oar] = ml
        if indices is not None and oar in used:
            painter.paint(oar, indices)
    overlap_findings(files, painter.overlaps, float(np.prod(ct.spacing)) / 1000.0, out)
    return painter.labels, volumes


# ------------------------------------------------------------------------ registration, QA


def registration_findings(ct_hu: sitk.Image, mr: sitk.Image, mr_file: str, settings: Settings,
                          out: Findings) -> dict[str, object]:
    """Register the MR to the CT as preprocessing does; the figures for ``cases.csv``."""
    from hanseg.registration import (
        register_mr_to_ct,  # scipy and the optimiser: only when asked for
    )

    try:
        mr_fixed, _ = sanitize_mr(mr)
        _, head = crop_boxes(ct_hu, mr_fixed, settings.body_threshold_hu, BODY_MARGIN_MM, None)
        result = register_mr_to_ct(ct_hu, mr_fixed, head, settings.body_threshold_hu)
    except (RuntimeError, HansegError) as exc:  # ITK errors are RuntimeErrors
        out.warning(mr_file, "registration", f"registration could not run ({exc}): this case would train "
                    "from the CT alone")
        return {"reg_ok": "no", "reg_message": str(exc)}
    if result.ok:
        out.info(mr_file, "registration", result.message)
    else:
        out.warning(mr_file, "registration", f"MR registration failed: {result.message}. This case trains from "
                    "the CT alone (MR channel zero): check that the MR is this patient's head T1")
    return {"reg_ok": "yes" if result.ok else "no", "reg_outline_dice": round(result.outline_dice, 4),
            "reg_rotation_deg": round(result.rotation_deg, 2),
            "reg_translation_mm": " ".join(f"{v:.1f}" for v in result.translation_mm), "reg_message": result.message}


#: Context kept around the OARs in the QA picture, in mm.
QA_MARGIN_MM = 40.0


def _crop_to_labels(ct_hu: sitk.Image, labels: np.ndarray) -> tuple[sitk.Image, np.ndarray]:
    """CT and label map cut to the OARs plus :data:`QA_MARGIN_MM`: the picture shows only that
    region, and resampling a whole 1024x1024x300 CT for it costs seconds and gigabytes."""
    axes = [np.flatnonzero(labels.any(axis=tuple(a for a in range(3) if a != k))) for k in range(3)]
    if any(a.size == 0 for a in axes):
        return ct_hu, labels
    margin = [int(np.ceil(QA_MARGIN_MM / s)) for s in ct_hu.GetSpacing()[::-1]]
    lo = [max(0, int(a[0]) - m) for a, m in zip(axes, margin)]
    hi = [min(n, int(a[-1]) + 1 + m) for a, m, n in zip(axes, margin, labels.shape)]
    cropped = ct_hu[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]  # SimpleITK slices x, y, z; keeps the geometry
    return cropped, labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]


def write_overlay(ct_hu: sitk.Image, labels: np.ndarray, qa_dir: Path, case_id: str, out: Findings) -> None:
    from evaluation.qa import overlay_png  # matplotlib: only when a picture is drawn

    ct_crop, labels_crop = _crop_to_labels(ct_hu, labels)
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels_crop))
    image.CopyInformation(ct_crop)
    present = int(np.count_nonzero(np.bincount(labels_crop.reshape(-1), minlength=len(OAR_NAMES) + 1)[1:]))
    qa_dir.mkdir(parents=True, exist_ok=True)
    path = overlay_png(ct_crop, image, qa_dir / f"{case_id}.png", f"{case_id}: {present} OARs as training sees them")
    out.info(path.name, "qa", f"QA overlay written to {path}")


# ------------------------------------------------------------------------------- one case


def _check_images(files: CaseFiles, row: Mapping[str, float] | None, settings: Settings, out: Findings,
                  summary: dict[str, object]) -> dict[str, float]:
    """The checks that need the images (the CT exists); returns the mask volumes."""
    loaded = _load(files.ct, "ct", out)  # type: ignore[arg-type]
    if loaded is None:
        return {}
    ct_info, ct, lo, hi = loaded
    summary.update(_image_summary("ct", ct_info, lo, hi))
    ct_findings(ct, lo, hi, ct_info.file, out)
    mr = _mr(files, out, summary)
    used = used_masks(files, row, settings.min_reliability)
    summary.update(masks=len(files.masks), masks_used=len(used))
    labels, volumes = masks_pass(files, ct_info, used, settings, out)
    ct_hu, _ = sanitize_ct(ct)  # what the network sees (and the QA window expects)
    del ct
    if settings.registration and mr is not None:
        summary.update(registration_findings(ct_hu, mr, files.mr.name, settings, out))  # type: ignore[union-attr]
    if settings.qa_dir is not None:
        write_overlay(ct_hu, labels, settings.qa_dir, files.case_id, out)
    return volumes


def _mr(files: CaseFiles, out: Findings, summary: dict[str, object]) -> sitk.Image | None:
    if files.mr is None:
        return None
    loaded = _load(files.mr, "mr", out)
    if loaded is None:
        return None
    info, mr, lo, hi = loaded
    summary.update(_image_summary("mr", info, lo, hi))
    summary["mr_offset"] = mr_findings(mr, lo, hi, info.file, out)
    return mr


def check_case(folder: Path, row: Mapping[str, float] | None, has_table: bool, settings: Settings) -> CaseResult:
    """Every per-case check of one ``case_XX`` folder (runs in a worker process with --workers)."""
    start = time.perf_counter()
    files = case_files(folder)
    out = Findings(files.case_id)
    naming_findings(files, out)
    if has_table:
        csv_findings(files, row, settings.min_reliability, out)
    summary: dict[str, object] = {"case": files.case_id}
    volumes = _check_images(files, row, settings, out, summary) if files.ct is not None else {}
    summary.update(errors=sum(f.severity == ERROR for f in out.items),
                   warnings=sum(f.severity == WARNING for f in out.items),
                   seconds=round(time.perf_counter() - start, 1))
    summary.update({f"vol_{n}_ml": round(volumes[n], 4) for n in OAR_NAMES if n in volumes})
    return CaseResult(files.case_id, tuple(out.items), summary, volumes)


# ------------------------------------------------------------------------ dataset volumes


def robust_outliers(values: Mapping[str, float], k: float = OUTLIER_MADS,
                    min_n: int = MIN_CASES_FOR_STATS) -> dict[str, float]:
    """The values more than ``k`` robust standard deviations (MAD x 1.4826) from their median,
    as case -> robust z score; nothing below ``min_n`` values. The scale is floored at 1 % of
    the median, so identical copies of one case do not flag a sub-percent difference."""
    if len(values) < min_n:
        return {}
    v = np.array(list(values.values()), float)
    median = float(np.median(v))
    scale = max(MAD_TO_SD * float(np.median(np.abs(v - median))), 0.01 * abs(median), 1e-12)
    z = {c: (x - median) / scale for c, x in values.items()}
    return {c: s for c, s in z.items() if abs(s) > k}


def half_ratio(values: Sequence[float], min_n: int = MIN_CASES_FOR_STATS) -> float | None:
    """Median of the second half over the median of the first half of ``values`` (in case
    order; the first half is the shorter one when the count is odd), or None when too few."""
    if len(values) < min_n:
        return None
    half = len(values) // 2
    first, second = float(np.median(values[:half])), float(np.median(values[half:]))
    return second / first if first > 0 else None


def _range_findings(case: CaseResult) -> list[Finding]:
    out = []
    for oar, ml in case.volumes_ml.items():
        lo, hi = TYPICAL_VOLUME_ML[oar]
        if ml > 0 and not lo <= ml <= hi:
            out.append(Finding(case.case_id, oar_file_name(case.case_id, oar), "volume", WARNING,
                               f"{oar} volume {ml:.3g} mL is outside the typical adult range {lo:g}-{hi:g} mL "
                               "(dataset.volumes): check that the file holds this OAR of this patient, in full"))
    return out


def _outlier_findings(oar: str, volumes: Mapping[str, float]) -> list[Finding]:
    median = float(np.median(list(volumes.values()))) if volumes else 0.0
    return [Finding(c, oar_file_name(c, oar), "volume_outlier", WARNING,
                    f"{oar} volume {volumes[c]:.3g} mL is {z:+.1f} robust SD from this dataset's median "
                    f"{median:.3g} mL ({len(volumes)} cases): look for a partial, extended or mislabelled contour")
            for c, z in robust_outliers(volumes).items()]


def _drift_finding(oar: str, volumes: Mapping[str, float]) -> list[Finding]:
    cases = sorted(volumes)
    ratio = half_ratio([volumes[c] for c in cases])
    if ratio is None or 1 / DRIFT_RATIO <= ratio <= DRIFT_RATIO:
        return []
    half = len(cases) // 2
    return [Finding("", "", "volume_drift", WARNING,
                    f"{oar}: median volume x{ratio:.2f} between {cases[0]}..{cases[half - 1]} and "
                    f"{cases[half]}..{cases[-1]}: the contouring changed within the dataset (HaN-Seg's cochleae "
                    "are known to). The network learns a mixture: keep it in mind when reading validation scores")]


def volume_findings(cases: Sequence[CaseResult]) -> list[Finding]:
    """Volumes against typical adult ranges, then against the other cases of the dataset."""
    out = [f for case in cases for f in _range_findings(case)]
    for oar in OAR_NAMES:
        volumes = {c.case_id: c.volumes_ml[oar] for c in cases if c.volumes_ml.get(oar, 0.0) > 0}
        out += _drift_finding(oar, volumes) + _outlier_findings(oar, volumes)
    return out


# ---------------------------------------------------------------------------- the dataset


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


def run_cases(folders: Sequence[Path], table: OarTable | None, settings: Settings,
              workers: int) -> Iterator[CaseResult]:
    """Each case's result, in folder order whatever the number of worker processes."""
    rows = [None if table is None else table.get(f.name) for f in folders]
    jobs = (folders, rows, [table is not None] * len(folders), [settings] * len(folders))
    if workers <= 1:
        with _quiet_runtime():
            yield from map(check_case, *jobs)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)  # each process its share of ITK's threads
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(threads,)) as pool:
        yield from pool.map(check_case, *jobs)  # map keeps the input order: deterministic output


def _progress(results: Iterator[CaseResult], total: int) -> Iterator[CaseResult]:
    """A tqdm bar when stderr is a terminal, one log line per case otherwise (logs, CI)."""
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
            yield from tqdm(results, total=total, desc="checking cases", unit="case")
            return
        except ImportError:
            pass
    for i, r in enumerate(results, 1):
        log.info("%s checked (%d/%d) in %s s: %s errors, %s warnings", r.case_id, i, total,
                 r.summary.get("seconds"), r.summary.get("errors"), r.summary.get("warnings"))
        yield r


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


# ---------------------------------------------------------------------------------- output


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


def _summary_handler() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    summary_log.handlers[:] = [handler]  # replaced, not added: main() may run twice in one process
    summary_log.propagate = False
    summary_log.setLevel(logging.INFO)


def log_summary(result: DatasetResult, data: Path, out_dir: Path) -> None:
    counts = {s: result.count(s) for s in SEVERITIES}
    summary_log.info("check_data: %d case(s) in %s: %d error(s), %d warning(s), %d info", len(result.cases), data,
                     counts[ERROR], counts[WARNING], counts[INFO])
    for severity in (ERROR, WARNING):
        for f in (f for f in result.findings if f.severity == severity):
            where = " ".join(x for x in (f.case, f.file) if x)
            summary_log.info("%-7s %s [%s] %s", severity.upper(), where, f.check, f.message)
    verdict = ("errors found: training would fail or learn wrong labels. Fix them, then run this again"
               if counts[ERROR] else "no errors: the dataset can be trained on"
               + (" (read the warnings first)" if counts[WARNING] else ""))
    summary_log.info("%s. Tables: %s, %s; QA pictures: %s", verdict, out_dir / "findings.csv",
                     out_dir / "cases.csv", out_dir / "qa")


# ------------------------------------------------------------------------------------- CLI


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.check_data",
                                description="Check a HaN-Seg raw dataset before training (errors exit 1).")
    p.add_argument("--data", type=Path, required=True, help="raw dataset folder (case_XX/..., OAR_data.csv)")
    p.add_argument("--out", type=Path, default=Path("check_data"), help="folder for the tables and QA pictures")
    p.add_argument("--no-registration", action="store_true", help="skip the MR-to-CT registration (the slow part)")
    p.add_argument("--workers", type=int, default=1, help="cases checked in this many processes")
    p.add_argument("--min-oar-reliability", type=float, default=1.0, metavar="R",
                   help="as training's option: masks OAR_data.csv rates below R are left out of the label map")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        p.error(f"--data {args.data}: not a folder")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if not 0.0 <= args.min_oar_reliability <= 1.0:
        p.error("--min-oar-reliability must be within 0..1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _summary_handler()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = Settings(registration=not args.no_registration, min_reliability=args.min_oar_reliability,
                        qa_dir=args.out / "qa")
    result = check_dataset(args.data, settings, args.workers)
    write_findings(result, args.out / "findings.csv")
    write_cases(result, args.out / "cases.csv")
    log_summary(result, args.data, args.out)
    return 1 if result.count(ERROR) else 0


if __name__ == "__main__":
    raise SystemExit(main())
