"""Build one 3D volume from one DICOM series, after checking that it is one.

Slices are ordered along the slice normal, ``n = row cosine × column cosine``, by the
key ``ImagePositionPatient · n``: never by InstanceNumber or file name, which scanners and
PACS exports fill inconsistently. Index k of the volume (SimpleITK's z index; numpy's first
axis, see :mod:`hanseg.io`) therefore runs along increasing ``position · n``, the direction
matrix's third column is ``n`` and the spacing is positive, also for feet-first series and
flipped cosines. :func:`read_volume` returns the instances in that k order, so a writer of
per-slice objects (RTSTRUCT contours) can pair slice k with its SOPInstanceUID.

Refused, each with a :class:`~hanseg.errors.DicomSeriesError` that names the series and
the files and says what to do:

* mixed orientations, frames of reference, matrix sizes or pixel spacings in one series;
* two files at the same slice position; a missing slice (a gap that is a multiple of the
  spacing); unequal slice spacing (beyond 1 % of the spacing or 0.01 mm, whichever is
  larger, which absorbs the rounding of positions written as decimal strings);
* **gantry-tilted series** (slice positions that move sideways, not along the normal).
  Such a stack is a sheared grid; the pipeline and the RTSTRUCT writer both assume each
  slice sits at ``origin + k · spacing · n``. Rather than resample behind the user's back,
  we ask for a tilt-corrected axial reconstruction made at the scanner or TPS;
* **multi-frame (enhanced) images**: all frames in one file need the per-frame
  functional groups for geometry; we ask for a classic one-file-per-slice export instead;
* optionally (``axial_tolerance_deg``) a slice normal further than that from the patient's
  z axis: CT selection asks for axial series; MR may be sagittal.

Pixel data are decoded by SimpleITK's GDCM reader (so compressed transfer syntaxes work)
and the resulting origin, direction, spacing and the position of every slice are checked
against the headers: a guard against silent mirror or reordering bugs. GDCM applies
RescaleSlope/Intercept, so CT comes out in HU: as int16 when every slope is 1, every
intercept whole and the values fit (they are then whole HU, and int16 halves the memory of
float32), else float32.
MR is always float32.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import DicomSeriesError
from ..geometry import Vec3
from ..io import itk_reason
from .scan import Instance, Orientation, Series

log = logging.getLogger(__name__)

#: Orientation cosines that differ by less than this are the same orientation.
ORIENTATION_TOL = 1e-4
#: Pixel spacings (mm) that differ by less than this are the same.
PIXEL_SPACING_TOL_MM = 1e-3
#: Slice positions closer than this along the normal are the same position.
DUPLICATE_TOL_MM = 0.01
#: Slice gap jitter tolerated: the larger of this fraction of the spacing and ...
SPACING_REL_TOL = 0.01
#: ... this many millimetres.
SPACING_ABS_TOL_MM = 0.01


@dataclass(frozen=True)
class SliceGeometry:
    """The geometry of a sorted, checked series, from its headers (LPS, mm)."""

    row: np.ndarray  # direction of increasing column index (SimpleITK x)
    column: np.ndarray  # direction of increasing row index (SimpleITK y)
    normal: np.ndarray  # direction of increasing k (SimpleITK z)
    origin: np.ndarray  # position of instance 0
    spacing_xyz: Vec3


# --- small geometry helpers ---------------------------------------------------------------


def valid_orientation(orientation: tuple[float, ...] | None) -> bool:
    """Two unit, perpendicular cosines (to the rounding of 6-decimal header strings)."""
    if orientation is None:
        return False
    row, col = np.array(orientation[:3], float), np.array(orientation[3:], float)
    return bool(
        abs(np.linalg.norm(row) - 1) < 1e-2
        and abs(np.linalg.norm(col) - 1) < 1e-2
        and abs(float(np.dot(row, col))) < 1e-2
    )


def slice_normal(orientation: tuple[float, ...]) -> np.ndarray:
    """Unit normal of the slice plane, row cosine × column cosine."""
    row, col = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row, col)
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        raise ValueError(f"ImageOrientationPatient {orientation} has parallel cosines")
    return normal / length


def angle_from_patient_axis_deg(orientation: tuple[float, ...]) -> float:
    """Angle (0-90°) between the slice normal and the patient's z axis: 0 for axial."""
    cos = min(1.0, abs(float(slice_normal(orientation)[2])))
    return math.degrees(math.acos(cos))


def along_normal(inst: Instance, normal: np.ndarray) -> float:
    """The sort key of a slice: its position projected on the slice normal (mm)."""
    return float(np.dot(np.array(inst.position, float), normal))


def _name(inst: Instance) -> str:
    return inst.path.name


# The geometry headers of an instance whose series passed :func:`check_complete_headers` (or
# :func:`hanseg.dicom.select.common_image_reason`): present, so no longer optional.


def orientation_of(inst: Instance) -> Orientation:
    """``inst``'s ImageOrientationPatient (see above)."""
    if inst.orientation is None:
        raise ValueError(f"{_name(inst)} has no ImageOrientationPatient: its headers were not checked")
    return inst.orientation


def position_of(inst: Instance) -> Vec3:
    """``inst``'s ImagePositionPatient (see above)."""
    if inst.position is None:
        raise ValueError(f"{_name(inst)} has no ImagePositionPatient: its headers were not checked")
    return inst.position


def pixel_spacing_of(inst: Instance) -> tuple[float, float]:
    """``inst``'s PixelSpacing, (between rows, between columns) (see above)."""
    if inst.pixel_spacing is None:
        raise ValueError(f"{_name(inst)} has no PixelSpacing: its headers were not checked")
    return inst.pixel_spacing


def _z(inst: Instance) -> str:
    """Where a slice is, in words: its z for axial-like slices (what a physicist reads off
    the couch), the whole position otherwise."""
    x, y, z = position_of(inst)
    if abs(slice_normal(orientation_of(inst))[2]) >= math.cos(math.radians(45)):
        return f"z={z:.2f}"
    return f"position ({x:.2f}, {y:.2f}, {z:.2f})"


def _refuse(series: Series, problem: str, todo: str) -> DicomSeriesError:
    return DicomSeriesError(f"{series.label}: {problem}; {todo}")


# --- header checks ------------------------------------------------------------------------


def check_complete_headers(series: Series) -> None:
    """Every instance is a single frame with position, orientation and pixel spacing."""
    if not series.instances:
        raise _refuse(series, "holds no files", "choose another series")
    for inst in series.instances:
        if inst.number_of_frames > 1:
            raise _refuse(
                series,
                f"{_name(inst)} is a multi-frame (enhanced) image with "
                f"{inst.number_of_frames} frames in one file, which is not supported",
                "export the series as classic single-frame images (one file per slice)",
            )
        missing = [
            k
            for k, v in (
                ("ImagePositionPatient", inst.position),
                ("ImageOrientationPatient", inst.orientation),
                ("PixelSpacing", inst.pixel_spacing),
            )
            if v is None
        ]
        if missing:
            raise _refuse(
                series,
                f"{_name(inst)} has no {' or '.join(missing)}",
                "re-export the series from the scanner or PACS with its geometry",
            )
        if not valid_orientation(inst.orientation):
            raise _refuse(
                series,
                f"{_name(inst)} has a broken ImageOrientationPatient {inst.orientation} "
                "(the two cosines must be perpendicular unit vectors)",
                "re-export the series from the scanner or PACS",
            )
    if len(series.instances) < 2:
        raise _refuse(series, "has only one slice", "choose a series with several slices")


def check_uniform(series: Series) -> None:
    """One orientation, frame of reference, matrix size and pixel spacing for all files."""
    first = series.instances[0]
    for inst in series.instances[1:]:
        if not np.allclose(orientation_of(inst), orientation_of(first), atol=ORIENTATION_TOL, rtol=0):
            raise _refuse(
                series,
                f"mixes orientations: {_name(first)} has ImageOrientationPatient "
                f"{first.orientation}, {_name(inst)} has {inst.orientation}",
                "a series must be one stack of parallel slices; export each stack as its own series",
            )
        if inst.frame_of_reference_uid != first.frame_of_reference_uid:
            raise _refuse(
                series,
                f"mixes frames of reference: {_name(first)} has "
                f"FrameOfReferenceUID {first.frame_of_reference_uid or '(none)'}, "
                f"{_name(inst)} has {inst.frame_of_reference_uid or '(none)'}",
                "the files come from different acquisitions; export the series again",
            )
        if (inst.rows, inst.columns) != (first.rows, first.columns):
            raise _refuse(
                series,
                f"mixes matrix sizes: {_name(first)} is {first.rows}x{first.columns}, "
                f"{_name(inst)} is {inst.rows}x{inst.columns} (rows x columns)",
                "export the series again with one matrix size",
            )
        if not np.allclose(pixel_spacing_of(inst), pixel_spacing_of(first), atol=PIXEL_SPACING_TOL_MM, rtol=0):
            raise _refuse(
                series,
                f"mixes pixel spacings: {_name(first)} has {first.pixel_spacing} mm, "
                f"{_name(inst)} has {inst.pixel_spacing} mm",
                "export the series again with one pixel spacing",
            )


def check_axial(series: Series, tolerance_deg: float) -> None:
    """The slice normal lies within ``tolerance_deg`` of the patient's z axis."""
    angle = angle_from_patient_axis_deg(orientation_of(series.instances[0]))
    if angle > tolerance_deg:
        raise _refuse(
            series,
            f"is not axial (slice normal {angle:.0f}° from the patient axis, more than {tolerance_deg:g}°)",
            "use an axial reconstruction of the scan",
        )


def sorted_instances(series: Series) -> tuple[Instance, ...]:
    """The instances ordered by increasing ``position · normal`` (file path breaks ties,
    so duplicates are reported the same way whatever the file order)."""
    check_complete_headers(series)
    check_uniform(series)
    normal = slice_normal(orientation_of(series.instances[0]))
    return tuple(sorted(series.instances, key=lambda i: (along_normal(i, normal), str(i.path))))


def check_no_duplicates(series: Series, ordered: tuple[Instance, ...], normal: np.ndarray) -> None:
    for a, b in itertools.pairwise(ordered):
        if abs(along_normal(b, normal) - along_normal(a, normal)) < DUPLICATE_TOL_MM:
            same = " (the same image twice: same SOPInstanceUID)" if a.sop_uid == b.sop_uid else ""
            raise _refuse(
                series,
                f"two files at the same slice position {_z(a)} mm: {a.path} and {b.path}{same}",
                "remove one of them from the input",
            )


def check_no_tilt(series: Series, ordered: tuple[Instance, ...], normal: np.ndarray) -> None:
    """Slice positions move only along the normal: a sideways drift is a gantry tilt."""
    first = np.array(ordered[0].position, float)
    offsets = np.array([inst.position for inst in ordered], float) - first
    along = offsets @ normal
    sideways = np.linalg.norm(offsets - np.outer(along, normal), axis=1)
    tolerance = max(SPACING_ABS_TOL_MM, SPACING_REL_TOL * min(pixel_spacing_of(ordered[0])))
    worst = int(np.argmax(sideways))
    if sideways[worst] > tolerance:
        tilt = math.degrees(math.atan2(sideways[worst], abs(along[worst])))
        raise _refuse(
            series,
            f"is a gantry-tilted series (about {tilt:.1f}° tilt: the slice "
            f"positions shift {sideways[worst]:.2f} mm sideways across the stack, not along "
            "the slice normal); gantry-tilted series are not supported",
            "reconstruct or resample the scan to axial slices at the scanner or TPS and use that series",
        )


def _gap_message(a: Instance, b: Instance, gap: float, step: float) -> str | None:
    """Why the gap between neighbours ``a`` and ``b`` is wrong, or None when it is fine."""
    tol = max(SPACING_ABS_TOL_MM, SPACING_REL_TOL * step)
    if abs(gap - step) <= tol:
        return None
    missing = round(gap / step) - 1
    if missing >= 1 and abs(gap - (missing + 1) * step) <= tol * (missing + 1):
        return (
            f"{missing} slice{'s' if missing > 1 else ''} missing between {_z(a)} and {_z(b)} mm "
            f"({_name(a)}, {_name(b)}: gap {gap:.2f} mm, spacing {step:.2f} mm elsewhere)"
        )
    return (
        f"unequal slice spacing: {gap:.2f} mm between {_z(a)} and {_z(b)} mm "
        f"({_name(a)}, {_name(b)}), {step:.2f} mm elsewhere"
    )


def check_spacing(series: Series, ordered: tuple[Instance, ...], normal: np.ndarray) -> float:
    """The slice spacing (mm): equal gaps, or an error naming the first gap that is not."""
    keys = np.array([along_normal(i, normal) for i in ordered])
    gaps = np.diff(keys)
    step = float(np.median(gaps))  # the most common gap: robust to one missing slice
    for k, gap in enumerate(gaps):
        problem = _gap_message(ordered[k], ordered[k + 1], float(gap), step)
        if problem:
            raise _refuse(series, problem, "export the complete series again from the scanner or PACS")
    return float((keys[-1] - keys[0]) / (len(keys) - 1))


def check_series(
    series: Series, axial_tolerance_deg: float | None = None
) -> tuple[tuple[Instance, ...], SliceGeometry]:
    """All header checks; the instances in k order and their geometry."""
    ordered = sorted_instances(series)
    if axial_tolerance_deg is not None:
        check_axial(series, axial_tolerance_deg)
    first = ordered[0]
    orientation = orientation_of(first)
    normal = slice_normal(orientation)
    check_no_duplicates(series, ordered, normal)
    check_no_tilt(series, ordered, normal)
    step = check_spacing(series, ordered, normal)
    row_mm, col_mm = pixel_spacing_of(first)
    # PixelSpacing is (between rows, between columns): x (along a row) is the second value
    geometry = SliceGeometry(
        np.array(orientation[:3], float),
        np.array(orientation[3:], float),
        normal,
        np.array(first.position, float),
        (col_mm, row_mm, step),
    )
    return ordered, geometry


# --- pixel data ---------------------------------------------------------------------------


def check_image_geometry(
    image: sitk.Image, ordered: tuple[Instance, ...], geometry: SliceGeometry, series: Series
) -> None:
    """SimpleITK's origin, direction, spacing and per-slice positions equal the headers'."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    expected = np.column_stack([geometry.row, geometry.column, geometry.normal])
    size = image.GetSize()
    problems = []
    if size != (ordered[0].columns, ordered[0].rows, len(ordered)):
        problems.append(f"size {size} instead of {(ordered[0].columns, ordered[0].rows, len(ordered))}")
    if not np.allclose(direction, expected, atol=ORIENTATION_TOL * 10, rtol=0):
        problems.append(f"direction {direction.round(4).tolist()} instead of {expected.round(4).tolist()}")
    if not np.allclose(image.GetSpacing(), geometry.spacing_xyz, rtol=1e-4, atol=1e-4):
        problems.append(f"spacing {image.GetSpacing()} instead of {geometry.spacing_xyz}")
    tol = max(SPACING_ABS_TOL_MM, SPACING_REL_TOL * geometry.spacing_xyz[2]) + 1e-3
    for k, inst in enumerate(ordered):
        point = image.TransformIndexToPhysicalPoint((0, 0, k))
        if not np.allclose(point, position_of(inst), atol=tol, rtol=0):
            problems.append(
                f"slice {k} at {tuple(round(p, 3) for p in point)} instead of {inst.position} ({_name(inst)})"
            )
            break
    if problems:
        raise _refuse(
            series,
            "the decoded volume's geometry disagrees with the DICOM headers: " + "; ".join(problems),
            "report this series to the software's maintainers",
        )


def _ct_pixel_type(image: sitk.Image, ordered: tuple[Instance, ...]) -> int:
    """int16 when every rescale is whole and the values fit, else float32 (see module doc)."""
    whole = all(i.rescale_slope == 1.0 and float(i.rescale_intercept).is_integer() for i in ordered)
    if not whole:
        return int(sitk.sitkFloat32)
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    fits = stats.GetMinimum() >= -32768 and stats.GetMaximum() <= 32767
    return int(sitk.sitkInt16 if fits else sitk.sitkFloat32)


def first_undecodable(ordered: tuple[Instance, ...]) -> str:
    """The first file whose pixels GDCM cannot decode, with its reason (only run after
    the series reader failed, whose message names no file)."""
    for inst in ordered:
        try:
            sitk.ReadImage(str(inst.path))
        except RuntimeError as exc:
            return f"{inst.path}: {itk_reason(exc)}"
    return "no single file fails on its own"


def decode(series: Series, ordered: tuple[Instance, ...]) -> sitk.Image:
    """The pixel data of ``ordered`` files in that order, rescaled by GDCM."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(inst.path) for inst in ordered])
    if series.modality != "CT":
        reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        image: sitk.Image = reader.Execute()
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        raise _refuse(
            series,
            f"its pixel data cannot be decoded ({first_undecodable(ordered)})",
            "check for truncated files or re-export the series uncompressed",
        ) from exc
    return image


def read_volume(series: Series, axial_tolerance_deg: float | None = None) -> tuple[sitk.Image, tuple[Instance, ...]]:
    """The checked volume of ``series`` and its instances in k order (see module doc).

    ``axial_tolerance_deg``: refuse a slice normal further than this from the patient's z
    axis (None accepts any orientation).
    """
    ordered, geometry = check_series(series, axial_tolerance_deg)
    image = decode(series, ordered)
    check_image_geometry(image, ordered, geometry, series)
    if series.modality == "CT":
        image = sitk.Cast(image, _ct_pixel_type(image, ordered))
    log.info(
        "read %s: size %s (x,y,z), spacing %s mm, %s",
        series.label,
        image.GetSize(),
        tuple(round(s, 4) for s in image.GetSpacing()),
        image.GetPixelIDTypeAsString(),
    )
    return image, ordered
