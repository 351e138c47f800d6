"""Tiny synthetic DICOM series written with pydicom, for the DICOM tests (imported as
``dicom_fixtures``; pytest puts ``tests/`` on the path).

A series is 5 rows x 4 columns x 6 slices by default, explicit VR little endian, one file
per slice named by its SOPInstanceUID in ``<study>/<series>/`` folders. UIDs derive from
the names given (``study``, ``series``), so two calls with the same names give the same
UIDs. The stored value of slice k (in the order of ``positions``), row r, column c is
``1000 + 100 k + 10 r + c`` unless ``stored`` is given, so a test can tell which slice
and pixel landed where. InstanceNumber runs backwards on purpose: nothing may sort by it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def uid(*names: str) -> str:
    """A valid, deterministic UID for the given names."""
    return generate_uid(entropy_srcs=list(names))


@dataclass(frozen=True)
class SeriesSpec:
    """What one synthetic series looks like (defaults: an axial ORIGINAL CT in HU)."""

    modality: str = "CT"
    series: str = "ct"  # name the SeriesInstanceUID derives from
    study: str = "study-a"
    patient_id: str = "P1"
    description: str = "CT head 2mm"
    series_number: int = 2
    n_slices: int = 6
    rows: int = 5
    columns: int = 4
    pixel_spacing: tuple[float, float] = (0.9, 0.8)  # (between rows, between columns)
    slice_spacing: float = 2.0
    origin: tuple[float, float, float] = (-10.0, -20.0, 30.0)
    orientation: tuple[float, ...] = AXIAL
    positions: tuple[tuple[float, float, float], ...] | None = None  # overrides the stack
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    frame_of_reference: str = "for-a"
    slope: float = 1.0
    intercept: float = -1024.0
    stored: np.ndarray | None = field(default=None, compare=False)  # (slices, rows, columns)
    mr: dict[str, Any] = field(default_factory=dict)  # MR header fields by keyword
    overrides: dict[int, dict[str, Any]] = field(default_factory=dict)  # slice -> keyword: value

    @property
    def series_uid(self) -> str:
        return uid(self.study, self.series)

    @property
    def study_uid(self) -> str:
        return uid(self.study)


def mr_spec(**kwargs: Any) -> SeriesSpec:
    """An axial MR series of 12 slices, without rescale."""
    values: dict[str, Any] = {
        "modality": "MR",
        "series": "mr",
        "description": "t1_mprage_tra",
        "slope": 1.0,
        "intercept": 0.0,
        "n_slices": 12,
        "image_type": ("ORIGINAL", "PRIMARY", "M", "ND"),
    }
    values.update(kwargs)
    return SeriesSpec(**values)


def stack_positions(spec: SeriesSpec) -> list[tuple[float, float, float]]:
    """Slice positions: the given ones, or ``origin + k * spacing * normal``."""
    if spec.positions is not None:
        return list(spec.positions)
    normal = np.cross(spec.orientation[:3], spec.orientation[3:])
    origin = np.array(spec.origin)
    points = [origin + k * spec.slice_spacing * normal for k in range(spec.n_slices)]
    return [(float(p[0]), float(p[1]), float(p[2])) for p in points]


def stored_values(spec: SeriesSpec, n: int) -> np.ndarray:
    if spec.stored is not None:
        return np.asarray(spec.stored, dtype=np.uint16)
    k, r, c = np.meshgrid(np.arange(n), np.arange(spec.rows), np.arange(spec.columns), indexing="ij")
    return (1000 + 100 * k + 10 * r + c).astype(np.uint16)


def base_dataset(spec: SeriesSpec, sop_uid: str) -> Dataset:
    """The patient/study/series part of every file of ``spec``."""
    ds = Dataset()
    ds.SOPClassUID = MR_STORAGE if spec.modality == "MR" else CT_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.PatientID, ds.PatientName = spec.patient_id, "Test^Patient"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = spec.study_uid, spec.series_uid
    ds.FrameOfReferenceUID = uid(spec.frame_of_reference)
    ds.Modality, ds.SeriesDescription, ds.SeriesNumber = spec.modality, spec.description, spec.series_number
    ds.ImageType = list(spec.image_type)
    for keyword, value in spec.mr.items():
        setattr(ds, keyword, value)
    return ds


def slice_dataset(spec: SeriesSpec, k: int, position: tuple[float, float, float], pixels: np.ndarray) -> Dataset:
    """File ``k`` of the series, with pixel data and the per-slice overrides applied."""
    ds = base_dataset(spec, uid(spec.study, spec.series, str(k)))
    ds.InstanceNumber = spec.n_slices - k  # backwards: must never decide the order
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in spec.orientation]
    ds.PixelSpacing = [f"{v:.6f}" for v in spec.pixel_spacing]
    ds.SliceThickness = spec.slice_spacing
    ds.Rows, ds.Columns = spec.rows, spec.columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = f"{spec.slope:g}", f"{spec.intercept:g}"
    ds.PixelData = pixels.astype("<u2").tobytes()
    for keyword, value in spec.overrides.get(k, {}).items():
        setattr(ds, keyword, value)
    return ds


def save(ds: Dataset, path: Path, preamble: bool = True) -> Path:
    """Write ``ds`` as a DICOM file (explicit VR little endian), or as a bare dataset
    without preamble and file meta when ``preamble`` is False."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not preamble:
        pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=True)
        return path
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_series(root: Path, spec: SeriesSpec = SeriesSpec(), names: list[str] | None = None) -> list[Path]:
    """Write ``spec`` under ``root``; the paths in slice (``positions``) order.

    Files go to ``root/<study name>/<series name>/<SOPInstanceUID>`` unless ``names``
    gives each file's path relative to ``root``.
    """
    positions = stack_positions(spec)
    pixels = stored_values(spec, len(positions))
    paths = []
    for k, position in enumerate(positions):
        ds = slice_dataset(spec, k, position, pixels[k])
        rel = names[k] if names else f"{spec.study}/{spec.series}/{ds.SOPInstanceUID}"
        paths.append(save(ds, root / rel))
    return paths


def write_rtstruct(root: Path, study: str = "study-a", name: str = "rs") -> Path:
    """A minimal RT Structure Set header (no contours): a non-image series."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_STORAGE, uid(study, name, "0")
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "P1", uid(study), uid(study, name)
    ds.Modality, ds.SeriesDescription = "RTSTRUCT", "clinical contours"
    return save(ds, root / study / name / ds.SOPInstanceUID)


def with_changes(spec: SeriesSpec, **changes: Any) -> SeriesSpec:
    return dataclasses.replace(spec, **changes)


def referenced_slices(rtstruct: Dataset) -> set[str]:
    """The CT slices an RTSTRUCT's ContourImageSequence names (its one referenced series)."""
    series = rtstruct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    return {str(item.ReferencedSOPInstanceUID) for item in series.ContourImageSequence}


def sop_uids(paths: Iterable[Path]) -> set[str]:
    """The SOP Instance UIDs of DICOM files."""
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}
