"""The label map as a DICOM RT Structure Set (RTSTRUCT) on the CT it was made from.

What a planning system needs and this module guarantees:

* same patient, study (StudyInstanceUID) and FrameOfReferenceUID as the CT; new series and
  SOP instance UIDs; the Structure Set references every CT slice, and each contour the
  slice it lies on;
* contours on voxel edges (:mod:`hanseg.dicom.contours`): a structure keeps its size, a
  one-voxel blob is a square, never a 2-point contour. Holes are separate closed contours
  inside their outer contour on the same slice; a reader applies the even-odd (XOR) rule
  (readers that OR the contours of a slice fill holes; see :mod:`hanseg.dicom.contours`);
* points go from voxel index to patient mm through the CT image's own geometry (origin,
  spacing, direction), so flipped or mirrored series are written the right way round; each
  contour is then projected onto its slice's plane from the slice header, after a check
  that image and headers agree;
* every Decimal String value is at most 16 characters (:func:`format_ds`);
* labelled as an automatic, unreviewed result (ApprovalStatus UNAPPROVED, the
  descriptions, ROIGenerationAlgorithm AUTOMATIC) with this software as Manufacturer.

Only non-empty structures are written; the builder returns the names of the empty ones.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    RTStructureSetStorage,
)
from scipy import ndimage

from .common import PATIENT_STUDY_KEYWORDS, UNREVIEWED, series_description, write_dataset_atomic
from .contours import Loop, mask_contours
from .identity import OutputIdentity, random_identity
from .names import Provenance, StructureStyle, check_styles

log = logging.getLogger(__name__)

#: ST values (StructureSetDescription, ROIDescription) hold at most 1024 characters (PS3.5 6.2)
MAX_ST_LENGTH = 1024
#: A slice stack whose step lies within about 25 degrees of the patient's z axis is called axial:
#: its first and last slices are then its inferior and superior ends (or the reverse).
AXIAL_COSINE = 0.9

#: Detached Study Management SOP Class: the value planning systems and dciodvfy expect as
#: ReferencedSOPClassUID of the RT Referenced Study Sequence (retired, still universal).
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"
#: Decimal places of decimal strings by default.
DS_DECIMALS = 4
#: Decimal places of contour coordinates in mm (10 micrometres, far finer than any CT
#: voxel): fewer characters per point keep a long contour within one element's 64 KiB.
CONTOUR_DECIMALS = 2
#: The most bytes one element holds in an explicit-VR transfer syntax (a 16-bit, even length).
#: pydicom would silently write a longer ContourData as UN, which a TPS cannot read.
MAX_ELEMENT_BYTES = 0xFFFE
DS_MAX_LENGTH = 16
#: Copied when present (Type 3), never invented.
OPTIONAL_COPIED_KEYWORDS = (
    "StudyDescription",
    "PatientAge",
    "PatientWeight",
    "PatientSize",
    "IssuerOfPatientID",
    "OtherPatientIDs",
)
STRUCTURE_SET_LABEL = "hanseg OAR auto"  # SH: at most 16 characters


def format_ds(value: float, decimals: int = DS_DECIMALS) -> str:
    """``value`` as a DICOM Decimal String of at most 16 characters.

    Rounded to ``decimals`` places with trailing zeros dropped; fewer places, then
    exponent notation, when the number is too long (never for coordinates in mm).
    """
    if not math.isfinite(value):
        raise ValueError(f"cannot write {value!r} as a DICOM decimal string")
    for places in range(decimals, -1, -1):
        text = f"{value:.{places}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text in ("-0", ""):
            text = "0"
        if len(text) <= DS_MAX_LENGTH:
            return text
    for digits in range(10, 0, -1):
        text = f"{value:.{digits}e}"
        if len(text) <= DS_MAX_LENGTH:
            return text
    raise ValueError(f"cannot write {value!r} in 16 characters")  # unreachable for floats


def format_ds_array(values: np.ndarray, decimals: int = DS_DECIMALS) -> list[str]:
    """:func:`format_ds` of every value, vectorised for the common case (a structure set
    holds hundreds of thousands of coordinates); values that come out too long, or
    are not finite, go through :func:`format_ds` one by one."""
    flat = np.asarray(values, float).ravel()
    text = np.char.mod(f"%.{decimals}f", flat)
    if decimals > 0:
        text = np.char.rstrip(np.char.rstrip(text, "0"), ".")
    text[text == "-0"] = "0"
    out: list[str] = text.tolist()
    for i in np.flatnonzero((np.char.str_len(text) > DS_MAX_LENGTH) | ~np.isfinite(flat)):
        out[i] = format_ds(float(flat[i]), decimals)
    return out


@dataclass(frozen=True, eq=False)
class _SliceGeometry:
    """Voxel index (x, y, k) to patient mm for the CT, and the header plane of each slice."""

    origin: np.ndarray  # (3,) mm
    matrix: np.ndarray  # (3, 3): direction @ diag(spacing)
    normal: np.ndarray  # (3,) unit normal of the slice planes
    shift: np.ndarray  # (n_slices, 3): moves image slice k onto header plane k

    def to_patient(self, points_xy: np.ndarray, k: int) -> np.ndarray:
        """(N, 2) continuous (x, y) indices of slice k as (N, 3) patient mm (LPS)."""
        index = np.column_stack([points_xy, np.full(len(points_xy), float(k))])
        # The same arithmetic as sitk's TransformContinuousIndexToPhysicalPoint.
        points: np.ndarray = self.origin + index @ self.matrix.T + self.shift[k]
        return points


def _header_vector(header: Dataset, keyword: str, size: int, k: int) -> np.ndarray:
    value = header.get(keyword)
    if value is None or len(value) != size:
        raise ValueError(f"CT slice {k} (SOP {header.get('SOPInstanceUID', '?')}) has no valid {keyword}")
    return np.asarray([float(v) for v in value])


def _slice_geometry(ct: sitk.Image, headers: Sequence[Dataset]) -> _SliceGeometry:
    """The image geometry, checked slice by slice against the headers it came from."""
    direction = np.asarray(ct.GetDirection(), float).reshape(3, 3)
    spacing = np.asarray(ct.GetSpacing(), float)
    origin = np.asarray(ct.GetOrigin(), float)
    matrix = direction * spacing  # column i = step of index axis i in mm
    normal = np.cross(direction[:, 0], direction[:, 1])
    normal /= np.linalg.norm(normal)
    tolerance = 0.1 * float(spacing.min())
    shifts = []
    for k, header in enumerate(headers):
        iop = _header_vector(header, "ImageOrientationPatient", 6, k)
        if not (np.allclose(iop[:3], direction[:, 0], atol=1e-3) and np.allclose(iop[3:], direction[:, 1], atol=1e-3)):
            raise ValueError(
                f"CT slice {k}: ImageOrientationPatient {iop.tolist()} does not match "
                f"the image direction {direction.T[:2].ravel().tolist()}"
            )
        ipp = _header_vector(header, "ImagePositionPatient", 3, k)
        corner = origin + matrix[:, 2] * k
        if np.linalg.norm(ipp - corner) > tolerance:
            raise ValueError(
                f"CT slice {k}: ImagePositionPatient {ipp.tolist()} is not where the "
                f"image puts slice {k} ({corner.round(4).tolist()}); headers and "
                "image are not the same series or not in the same order"
            )
        # Only the out-of-plane part is corrected: planning systems match a contour to the
        # slice plane of the header, so it must lie there to the precision written.
        shifts.append(np.dot(ipp - corner, normal) * normal)
    return _SliceGeometry(origin, matrix, normal, np.asarray(shifts).reshape(-1, 3))


def _check_inputs(labels: np.ndarray, ct: sitk.Image, headers: Sequence[Dataset]) -> None:
    if labels.dtype != np.uint8:
        raise TypeError(f"label map must be uint8, got {labels.dtype}")
    expected = tuple(reversed(ct.GetSize()))
    if labels.shape != expected:
        raise ValueError(f"label map shape {labels.shape} (z,y,x) != CT size {expected}")
    if len(headers) != expected[0]:
        raise ValueError(f"{len(headers)} CT headers for {expected[0]} slices")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = {str(h.get(keyword, "")) for h in headers}
        if len(values) != 1 or "" in values:
            raise ValueError(f"the CT headers must share one non-empty {keyword}, got {sorted(values)}")


def _text_values(headers: Sequence[Dataset], styles: Sequence[StructureStyle]) -> list[str]:
    """The text this object will hold that did not come from us: patient and study values,
    and the (configurable) structure names."""
    first = headers[0]
    texts = [str(first.get(k, "") or "") for k in PATIENT_STUDY_KEYWORDS + OPTIONAL_COPIED_KEYWORDS]
    return texts + [s.name for s in styles]


def _character_set(headers: Sequence[Dataset], styles: Sequence[StructureStyle]) -> str | None:
    """The CT's Specific Character Set if every text fits ASCII, else UTF-8 (ISO_IR 192):
    a renamed structure may hold characters the CT's set cannot encode."""
    if all(t.isascii() for t in _text_values(headers, styles)):
        value = headers[0].get("SpecificCharacterSet")
        return value if value else None
    return "ISO_IR 192"


def _add_patient_study_series(
    ds: Dataset, first: Dataset, provenance: Provenance, identity: OutputIdentity, series_number: int, now: datetime
) -> None:
    for keyword in PATIENT_STUDY_KEYWORDS:
        setattr(ds, keyword, first.get(keyword, ""))
    for keyword in OPTIONAL_COPIED_KEYWORDS:
        if keyword in first:
            setattr(ds, keyword, first.get(keyword))
    ds.StudyInstanceUID = first.StudyInstanceUID
    ds.FrameOfReferenceUID = first.FrameOfReferenceUID
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "")
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = identity.rtstruct_series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDate, ds.SeriesTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.SeriesDescription = series_description(provenance.model_version, identity.replaces is not None)
    ds.OperatorsName = ""
    ds.Manufacturer = provenance.manufacturer
    ds.ManufacturerModelName = provenance.model_name
    ds.DeviceSerialNumber = provenance.device_serial_number
    ds.SoftwareVersions = [provenance.software_version, f"model {provenance.model_version}"[:64]]


def structure_set_description(provenance: Provenance, identity: OutputIdentity, notes: Sequence[str]) -> str:
    """StructureSetDescription (ST, at most 1024 characters): what made it, what it replaces,
    and the warnings a dosimetrist must read before planning on it."""
    text = (
        f"{UNREVIEWED.capitalize()}: {provenance.model_name}, model "
        f"{provenance.model_version}, software {provenance.software_version}. "
        "Check every structure before clinical use."
    )
    if identity.replaces is not None:
        text += f" Replaces the structure set {identity.replaces.rtstruct_sop_uid}."
    for note in notes:
        text += f" WARNING: {note}"
    if len(text) > MAX_ST_LENGTH:
        text = text[: MAX_ST_LENGTH - 40] + " ... (all warnings in the audit record)"
    return text


def _add_structure_set(
    ds: Dataset,
    headers: Sequence[Dataset],
    provenance: Provenance,
    identity: OutputIdentity,
    notes: Sequence[str],
    now: datetime,
) -> None:
    ds.StructureSetLabel = STRUCTURE_SET_LABEL
    ds.StructureSetName = f"hanseg OARs model {provenance.model_version}"[:64]
    ds.StructureSetDescription = structure_set_description(provenance, identity, notes)
    if identity.replaces is not None:
        # PS3.3 C.8.8.5: the structure set this one supersedes
        predecessor = Dataset()
        predecessor.ReferencedSOPClassUID = RTStructureSetStorage
        predecessor.ReferencedSOPInstanceUID = identity.replaces.rtstruct_sop_uid
        ds.PredecessorStructureSetSequence = DicomSequence([predecessor])
    ds.InstanceNumber = 1
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ApprovalStatus = "UNAPPROVED"
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame(headers)])


def _image_reference(header: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    return item


def _referenced_frame(headers: Sequence[Dataset]) -> Dataset:
    """Frame of reference -> study -> series -> every CT slice."""
    series = Dataset()
    series.SeriesInstanceUID = headers[0].SeriesInstanceUID
    series.ContourImageSequence = DicomSequence([_image_reference(h) for h in headers])
    study = Dataset()
    study.ReferencedSOPClassUID = DETACHED_STUDY_MANAGEMENT
    study.ReferencedSOPInstanceUID = headers[0].StudyInstanceUID
    study.RTReferencedSeriesSequence = DicomSequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = headers[0].FrameOfReferenceUID
    frame.RTReferencedStudySequence = DicomSequence([study])
    return frame


def _encoded_bytes(values: list[str]) -> int:
    return sum(map(len, values)) + len(values) - 1  # backslash-separated


def _farthest_from_chord(points: np.ndarray) -> tuple[int, float]:
    """Index and distance of the point of ``points`` farthest from the segment first → last."""
    start, chord = points[0], points[-1] - points[0]
    length = float(np.linalg.norm(chord))
    rel = points - start
    if length == 0:
        dist = np.linalg.norm(rel, axis=1)
    else:
        dist = np.linalg.norm(np.cross(rel, chord / length), axis=1)
    i = int(np.argmax(dist))
    return i, float(dist[i])


def simplify_closed(points: np.ndarray, tolerance_mm: float) -> np.ndarray:
    """The vertices of a closed polygon that keep every dropped vertex within
    ``tolerance_mm`` of the simplified outline (Douglas-Peucker, split at the vertex
    farthest from the first so the closing edge is treated like any other)."""
    far = int(np.argmax(np.linalg.norm(points - points[0], axis=1)))
    ring = np.vstack([points, points[:1]])
    keep = np.zeros(len(ring), bool)
    keep[[0, far, len(ring) - 1]] = True
    stack = [(0, far), (far, len(ring) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        i, dist = _farthest_from_chord(ring[a : b + 1])
        if dist > tolerance_mm:
            keep[a + i] = True
            stack += [(a, a + i), (a + i, b)]
    return ring[keep][:-1]


def contour_values(points_mm: np.ndarray, pixel_mm: float) -> list[str]:
    """ContourData of one loop as DS strings that fit one element. A loop too long even at
    0.1 mm (thousands of voxel-edge vertices, such as a noisy outline) is simplified with a
    tolerance that starts at a quarter pixel and doubles until it fits, with a warning."""
    for decimals in (CONTOUR_DECIMALS, 1):
        values = format_ds_array(points_mm, decimals)
        if _encoded_bytes(values) <= MAX_ELEMENT_BYTES:
            return values
    tolerance = pixel_mm / 4
    while True:
        simpler = simplify_closed(points_mm, tolerance)
        values = format_ds_array(simpler, 1)
        if _encoded_bytes(values) <= MAX_ELEMENT_BYTES or len(simpler) <= 3:
            log.warning(
                "a contour of %d points is too long for one DICOM element: simplified to %d points within %.2f mm",
                len(points_mm),
                len(simpler),
                tolerance,
            )
            return values
        tolerance *= 2


def _contour_item(number: int, points_mm: np.ndarray, header: Dataset) -> Dataset:
    item = Dataset()
    item.ContourNumber = number
    item.ContourImageSequence = DicomSequence([_image_reference(header)])
    item.ContourGeometricType = "CLOSED_PLANAR"
    values = contour_values(points_mm, min(float(v) for v in header.PixelSpacing))
    item.NumberOfContourPoints = len(values) // 3
    # Stored as the formatted strings themselves: pydicom's conversion of each value to a
    # DS object would take most of the time of a large structure set, and the strings are
    # exactly what it writes. A file read back holds ordinary DS values.
    item["ContourData"] = DataElement("ContourData", "DS", values, already_converted=True)
    return item


def _roi_contour(
    number: int,
    style: StructureStyle,
    loops_by_slice: dict[int, list[Loop]],
    offset_zyx: tuple[int, int, int],
    geometry: _SliceGeometry,
    headers: Sequence[Dataset],
) -> Dataset:
    """One ROI's contours, slice by slice; ``offset_zyx`` places the cropped mask."""
    dz, dy, dx = offset_zyx
    items: list[Dataset] = []
    for k, loops in sorted(loops_by_slice.items()):
        for loop in loops:
            points = geometry.to_patient(loop.points + np.array((dx, dy)), k + dz)
            items.append(_contour_item(len(items) + 1, points, headers[k + dz]))
    roi = Dataset()
    roi.ReferencedROINumber = number
    roi.ROIDisplayColor = list(style.colour)
    roi.ContourSequence = DicomSequence(items)
    return roi


def _end_name(k: int, geometry: _SliceGeometry, headers: Sequence[Dataset]) -> str:
    """Slice ``k`` (the first or the last) as a dosimetrist finds it: which end of the patient
    and its z when the slices are roughly axial (the stack may run either way), else its place."""
    first = k == 0
    place = f"{'first' if first else 'last'} slice"
    step = geometry.matrix[:, 2]
    cosine = float(step[2] / np.linalg.norm(step))  # +1: slice k + 1 lies superior to slice k
    if abs(cosine) < AXIAL_COSINE:
        return place
    side = "inferior" if (cosine > 0) == first else "superior"
    z = float(headers[k].ImagePositionPatient[2])
    return f"{place} (its {side} end, z = {z:.1f} mm)"


def _edge_description(first: bool, last: bool, geometry: _SliceGeometry, headers: Sequence[Dataset]) -> str | None:
    """ROIDescription of a structure that reaches the CT's first and/or last slice: it may go
    on beyond the scan, so its extent there is the CT's, not the organ's. None otherwise."""
    ends = [_end_name(k, geometry, headers) for k, touches in ((0, first), (len(headers) - 1, last)) if touches]
    if not ends:
        return None
    return (
        f"Cut at the edge of the CT: it reaches the CT's {' and '.join(ends)}; "
        "the organ may continue beyond the scan and is incomplete there."
    )


def _roi_items(
    number: int, style: StructureStyle, provenance: Provenance, frame_uid: str, description: str | None = None
) -> tuple[Dataset, Dataset]:
    """The Structure Set ROI item and the RT ROI Observations item of ROI ``number``."""
    roi = Dataset()
    roi.ROINumber = number
    roi.ReferencedFrameOfReferenceUID = frame_uid
    roi.ROIName = style.name
    if description:
        roi.ROIDescription = description[:MAX_ST_LENGTH]
    roi.ROIGenerationAlgorithm = "AUTOMATIC"
    roi.ROIGenerationDescription = f"{provenance.model_name} {provenance.model_version}"[:64]
    observation = Dataset()
    observation.ObservationNumber = number
    observation.ReferencedROINumber = number
    # DVH and dose tools key on the interpreted type; empty breaks them.
    observation.RTROIInterpretedType = "ORGAN"
    observation.ROIInterpreter = ""
    return roi, observation


def _new_dataset(headers: Sequence[Dataset], styles: Sequence[StructureStyle], sop_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    charset = _character_set(headers, styles)
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = RTStructureSetStorage
    return ds


def build_rtstruct(
    labels: np.ndarray,
    ct: sitk.Image,
    ct_headers: Sequence[Dataset],
    styles: Sequence[StructureStyle],
    provenance: Provenance,
    *,
    identity: OutputIdentity | None = None,
    notes: Sequence[str] = (),
    series_number: int = 1,
) -> tuple[Dataset, tuple[str, ...]]:
    """The RTSTRUCT of the non-empty structures of ``labels``, and the output names of the
    empty ones (not written).

    ``labels`` is the uint8 z,y,x label map on the grid of ``ct``; ``ct_headers[k]`` is the
    header of slice k of ``ct`` (pixel data not needed). ``styles`` names and colours the
    label ids to write, in ROI order. ``identity`` gives the UIDs (None: random ones) and
    what the result replaces; ``notes`` are warnings for the StructureSetDescription. A structure
    that reaches the first or last slice gets an ROIDescription saying it is cut at the edge of
    the CT (:func:`_edge_description`). Raises ValueError when no structure is non-empty, or
    when the headers do not describe the image.
    """
    styles = tuple(styles)
    check_styles(styles)
    _check_inputs(labels, ct, ct_headers)
    geometry = _slice_geometry(ct, ct_headers)
    boxes = ndimage.find_objects(labels)  # boxes[label - 1]: one pass over the volume
    now = datetime.now()
    identity = identity or random_identity()
    ds = _new_dataset(ct_headers, styles, identity.rtstruct_sop_uid)
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    _add_patient_study_series(ds, ct_headers[0], provenance, identity, series_number, now)
    _add_structure_set(ds, ct_headers, provenance, identity, notes, now)
    rois: list[Dataset] = []
    contours: list[Dataset] = []
    observations: list[Dataset] = []
    empty: list[str] = []
    cut_names: list[str] = []
    for style in styles:
        box = boxes[style.label - 1] if style.label <= len(boxes) else None
        if box is None:
            empty.append(style.name)
            continue
        number = len(rois) + 1
        loops = mask_contours(labels[box] == style.label)
        offset = (box[0].start, box[1].start, box[2].start)
        contours.append(_roi_contour(number, style, loops, offset, geometry, ct_headers))
        # on the structure itself: a dosimetrist reading one ROI sees it is cut by the scan
        cut = _edge_description(box[0].start == 0, box[0].stop == labels.shape[0], geometry, ct_headers)
        if cut:
            cut_names.append(style.name)
        roi, observation = _roi_items(number, style, provenance, ct_headers[0].FrameOfReferenceUID, cut)
        rois.append(roi)
        observations.append(observation)
    if not rois:
        raise ValueError("no structure to write: every structure of the map is empty")
    ds.StructureSetROISequence = DicomSequence(rois)
    ds.ROIContourSequence = DicomSequence(contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    log.info(
        "RTSTRUCT: %d structures, %d contours; empty, not written: %s; cut at the edge of the CT: %s",
        len(rois),
        sum(len(c.ContourSequence) for c in contours),
        ", ".join(empty) or "none",
        ", ".join(cut_names) or "none",
    )
    return ds, tuple(empty)


def write_rtstruct(ds: Dataset, path: Path | str) -> Path:
    """Write an RTSTRUCT from :func:`build_rtstruct` (see :func:`write_dataset_atomic`)."""
    return write_dataset_atomic(ds, path, "RTSTRUCT")
