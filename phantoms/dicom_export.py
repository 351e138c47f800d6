"""Phantom cases exported as DICOM, the way a scanner or a PACS export writes them.

Why this exists: the product gains a DICOM input path, and its tests need DICOM that
looks like the real thing: one single-frame file per slice, stored values that differ
from HU (the reader must apply the rescale), a CT and a T1 MR in one study with their own
frames of reference, distractor series (localizer, derived MIP, T2) that a series
selector must skip, UID-named files shuffled into nested folders, and optionally the
same anatomy with flipped in-plane axes, reversed slices or RLE compression.

Every tag is written with pydicom (not SimpleITK's writer) so that the tests control it.
Geometry follows :mod:`hanseg.io`: SimpleITK x, y, z; numpy z, y, x; ITK's LPS physical
space is DICOM's patient coordinate system, so ImagePositionPatient is the physical point
of a slice's first voxel and ImageOrientationPatient the first two direction columns.

``python -m phantoms.dicom_export --ct CT.mha [--mr MR.mha] --output DIR`` or
``--from-case-dir CASE_DIR`` (HaN-Seg raw case folder or container ``images/`` layout).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import SupportsFloat, TypedDict

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, RLELossless, generate_uid
from pydicom.valuerep import format_number_as_ds

from hanseg.io import read_image

from .errors import PhantomError

log = logging.getLogger(__name__)

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}
AXIAL = ("ORIGINAL", "PRIMARY", "AXIAL")
LOCALIZER = ("ORIGINAL", "PRIMARY", "LOCALIZER")
DERIVED = ("DERIVED", "SECONDARY", "AXIAL")
#: CT stored as unsigned 12-bit values with intercept -1024, as most scanners do.
CT_INTERCEPT = -1024.0
CT_BITS_STORED = 12


# =========================================================================================
# Settings
# =========================================================================================


@dataclass(frozen=True)
class StudySpec:
    """Patient and study module values shared by every series of one export."""

    study_uid: str
    patient_id: str = "PHANTOM"
    patient_name: str = "Phantom^HeadNeck"
    patient_birth_date: str = "19600101"
    patient_sex: str = "O"
    study_date: str = "20240102"
    study_time: str = "093000"
    study_id: str = "1"
    accession_number: str = "PH0001"
    referring_physician: str = "Referrer^Phantom"
    study_description: str = "HEAD NECK RT PLANNING"


@dataclass(frozen=True)
class MRSequence:
    """The MR acquisition tags a "which series is the T1" rule looks at."""

    protocol_name: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    acquisition_type: str  # "2D" or "3D"
    repetition_time: float  # ms
    echo_time: float  # ms
    inversion_time: float | None = None  # ms
    field_strength: float = 3.0  # T


T1_MPRAGE = MRSequence("t1_mprage_tra", ("GR", "IR"), ("SP", "MP"), "3D", 2000.0, 2.5, 900.0)
T2_TSE = MRSequence("t2_tse_tra", ("SE",), ("SK", "SP"), "2D", 4000.0, 100.0)


@dataclass(frozen=True)
class SeriesSpec:
    """How one series is written.

    ``stored = round((value - rescale_intercept) / rescale_slope)`` must fit in
    ``bits_stored`` bits (signed or not), else :class:`PhantomError`: the export never clips,
    so a read-back is exact. ``negate_column_cosine`` flips the y (row) axis and
    ``feet_first`` the x and z axes (ImageOrientationPatient ``[-1,0,0,...]`` and slices from
    head to feet, as a feet-first scan is written); the array changes, the physical world
    does not. ``first_instance`` lets two images (localizer views) share one series."""

    modality: str  # "CT" or "MR"
    study: StudySpec
    series_uid: str
    frame_of_reference_uid: str
    series_description: str
    series_number: int
    image_type: tuple[str, ...] = AXIAL
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    signed: bool = False
    bits_stored: int = 16
    negate_column_cosine: bool = False
    feet_first: bool = False
    compressed: bool = False
    first_instance: int = 1
    mr: MRSequence | None = None

    def __post_init__(self) -> None:
        if self.modality not in SOP_CLASSES:
            raise PhantomError(f"modality must be one of {', '.join(SOP_CLASSES)}, got {self.modality!r}")
        if self.modality == "CT" and self.mr is not None:
            raise PhantomError("a CT series has no MR sequence")
        if not 1 <= self.bits_stored <= 16 or self.rescale_slope <= 0 or self.first_instance < 1:
            raise PhantomError("bits_stored must be 1..16, rescale_slope > 0, first_instance >= 1")


@dataclass(frozen=True)
class ExportOptions:
    """Variations of :func:`export_case`, applied to every series of the exam (a feet-first
    scan is feet first in its localizer and its MR too)."""

    patient_id: str = "PHANTOM"
    feet_first: bool = False
    negate_column_cosine: bool = False
    compressed: bool = False
    #: the MR series in a study of their own (same patient), as a planning MR made on another day
    mr_own_study: bool = False


@dataclass(frozen=True)
class SeriesRecord:
    """One written series: what a test checks the series selector against."""

    series_uid: str
    frame_of_reference_uid: str
    modality: str
    description: str
    image_type: tuple[str, ...]
    files: tuple[Path, ...]  # in InstanceNumber order


@dataclass(frozen=True)
class ExportRecord:
    """One exported case: the folder and each series written into it."""

    folder: Path
    study_uid: str
    ct: SeriesRecord
    localizer: SeriesRecord
    derived: SeriesRecord
    mr: SeriesRecord | None
    t2: SeriesRecord | None

    @property
    def series(self) -> tuple[SeriesRecord, ...]:
        return tuple(s for s in (self.localizer, self.ct, self.derived, self.t2, self.mr) if s is not None)


# =========================================================================================
# Geometry and values
# =========================================================================================


def flip_axes(image: sitk.Image, flips_xyz: Sequence[bool]) -> sitk.Image:
    """The same physical image with the voxel order of the flagged axes reversed: array
    flipped, origin moved to the old far corner and those direction columns negated."""
    if not any(flips_xyz):
        return image
    array = sitk.GetArrayFromImage(image)
    order = tuple(slice(None, None, -1) if f else slice(None) for f in reversed(tuple(flips_xyz)))
    out = sitk.GetImageFromArray(np.ascontiguousarray(array[order]))
    corner = [n - 1 if f else 0 for n, f in zip(image.GetSize(), flips_xyz, strict=True)]
    direction = np.array(image.GetDirection()).reshape(3, 3) * np.where(flips_xyz, -1.0, 1.0)[None, :]
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(image.TransformIndexToPhysicalPoint(corner))
    out.SetDirection(tuple(float(v) for v in direction.ravel()))
    return out


def _check_geometry(image: sitk.Image) -> np.ndarray:
    """The direction matrix, after checking that DICOM can say it: 3D scalar, orthonormal
    in-plane axes (ImageOrientationPatient), slices not lying in their own plane."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise PhantomError(
            f"expected a 3D scalar image, got {image.GetDimension()}D "
            f"with {image.GetNumberOfComponentsPerPixel()} components"
        )
    d = np.array(image.GetDirection()).reshape(3, 3)
    row, col = d[:, 0], d[:, 1]
    if not np.allclose([row @ row, col @ col, row @ col], [1.0, 1.0, 0.0], atol=1e-6):
        raise PhantomError("the x and y directions must be orthonormal to be written as ImageOrientationPatient")
    if abs(np.cross(row, col) @ d[:, 2]) < 1e-3:
        raise PhantomError("the slice direction lies in the image plane")
    return d


def stored_values(image: sitk.Image, spec: SeriesSpec) -> np.ndarray:
    """The z, y, x array of stored pixel values: rescaled, rounded, and checked to fit."""
    values = sitk.GetArrayFromImage(image).astype(np.float64)
    stored = np.rint((values - spec.rescale_intercept) / spec.rescale_slope)
    bits = spec.bits_stored
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if spec.signed else (0, (1 << bits) - 1)
    if stored.size and (stored.min() < lo or stored.max() > hi):
        raise PhantomError(
            f"{spec.series_description}: values {values.min():g}..{values.max():g} do not fit "
            f"{bits} {'signed' if spec.signed else 'unsigned'} bits with slope "
            f"{spec.rescale_slope:g}, intercept {spec.rescale_intercept:g}"
        )
    return stored.astype(np.int16 if spec.signed else np.uint16)


def _ds(values: Iterable[SupportsFloat]) -> list[str]:
    """Decimal strings of at most 16 characters, as the DS VR demands (~1e-11 mm)."""
    return [format_number_as_ds(float(v)) for v in values]


def instance_uid(series_uid: str, instance: int) -> str:
    """A SOPInstanceUID derived from its series UID and instance number: unique per series,
    and the same for the same series, so exports are reproducible byte for byte."""
    return generate_uid(entropy_srcs=[series_uid, "instance", str(instance)])


# =========================================================================================
# Datasets
# =========================================================================================


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _patient_study(ds: Dataset, study: StudySpec) -> None:
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.ReferringPhysicianName = study.referring_physician
    ds.StudyDescription = study.study_description


def _series(ds: Dataset, spec: SeriesSpec, instance: int) -> None:
    ds.Modality = spec.modality
    ds.SeriesInstanceUID = spec.series_uid
    ds.SeriesNumber = spec.series_number
    ds.SeriesDescription = spec.series_description
    # Dates and times from the study, never the clock: exports are reproducible.
    ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = spec.study.study_date
    ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = spec.study.study_time
    ds.InstanceNumber = instance
    ds.AcquisitionNumber = 1
    ds.Manufacturer = "phantoms"
    ds.ManufacturerModelName = "synthetic head-and-neck phantom"
    ds.BodyPartExamined = "HEADNECK"
    ds.PatientPosition = "FFS" if spec.feet_first else "HFS"
    ds.FrameOfReferenceUID = spec.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""


def _plane(ds: Dataset, image: sitk.Image, d: np.ndarray, k: int) -> None:
    """Image plane module of slice ``k``: its first voxel's position and the in-plane axes."""
    sx, sy, sz = image.GetSpacing()
    normal = np.cross(d[:, 0], d[:, 1])
    position = np.array(image.TransformIndexToPhysicalPoint((0, 0, k)))
    ds.ImagePositionPatient = _ds(position)
    ds.ImageOrientationPatient = _ds(np.concatenate([d[:, 0], d[:, 1]]))
    ds.PixelSpacing = _ds((sy, sx))  # DICOM: spacing between rows (y), then between columns (x)
    ds.SliceThickness = format_number_as_ds(float(sz * abs(normal @ d[:, 2])))
    ds.SpacingBetweenSlices = ds.SliceThickness
    ds.SliceLocation = format_number_as_ds(float(position @ normal))


def _modality(ds: Dataset, spec: SeriesSpec) -> None:
    if spec.modality == "CT":
        ds.KVP = "120"
        ds.ConvolutionKernel = "Br40"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
    if spec.modality == "CT" or (spec.rescale_slope, spec.rescale_intercept) != (1.0, 0.0):
        # Required in the CT image module; on MR only where a scanner would write it.
        ds.RescaleIntercept = format_number_as_ds(spec.rescale_intercept)
        ds.RescaleSlope = format_number_as_ds(spec.rescale_slope)
        ds.RescaleType = "HU" if spec.modality == "CT" else "US"
    if spec.mr is not None:
        mr = spec.mr
        ds.ProtocolName = mr.protocol_name
        ds.ScanningSequence = list(mr.scanning_sequence)
        ds.SequenceVariant = list(mr.sequence_variant)
        ds.ScanOptions = ""
        ds.MRAcquisitionType = mr.acquisition_type
        ds.RepetitionTime = format_number_as_ds(mr.repetition_time)
        ds.EchoTime = format_number_as_ds(mr.echo_time)
        if mr.inversion_time is not None:
            ds.InversionTime = format_number_as_ds(mr.inversion_time)
        ds.EchoTrainLength = 1
        ds.MagneticFieldStrength = format_number_as_ds(mr.field_strength)


def _pixels(ds: Dataset, spec: SeriesSpec, pixels: np.ndarray) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = spec.bits_stored
    ds.HighBit = spec.bits_stored - 1
    ds.PixelRepresentation = 1 if spec.signed else 0
    if spec.compressed:
        # pydicom 3 encodes RLE Lossless natively; keep the UID we derived.
        ds.compress(RLELossless, pixels, generate_instance_uid=False)
    else:
        ds.PixelData = np.ascontiguousarray(pixels).astype("<u2" if not spec.signed else "<i2").tobytes()


def slice_dataset(image: sitk.Image, d: np.ndarray, stored: np.ndarray, k: int, spec: SeriesSpec) -> Dataset:
    """The complete dataset of slice ``k`` (0-based along the image's z index)."""
    instance = spec.first_instance + k
    sop_class, sop_uid = SOP_CLASSES[spec.modality], instance_uid(spec.series_uid, instance)
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(spec.image_type)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    _patient_study(ds, spec.study)
    _series(ds, spec, instance)
    _plane(ds, image, d, k)
    _modality(ds, spec)
    _pixels(ds, spec, stored[k])
    return ds


def write_series(image: sitk.Image, folder: Path, spec: SeriesSpec) -> tuple[Path, ...]:
    """Write ``image`` as one single-frame DICOM file per z slice, ``folder/<SOPInstanceUID>.dcm``,
    explicit VR little endian (or RLE Lossless); returns the paths in InstanceNumber order."""
    image = flip_axes(image, (spec.feet_first, spec.negate_column_cosine, spec.feet_first))
    d = _check_geometry(image)
    stored = stored_values(image, spec)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(image.GetSize()[2]):
        ds = slice_dataset(image, d, stored, k, spec)
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    log.debug("wrote %d %s slices of %r to %s", len(paths), spec.modality, spec.series_description, folder)
    return tuple(paths)


# =========================================================================================
# Distractor images
# =========================================================================================


def _plane_image(
    pixels: np.ndarray, origin: np.ndarray, row: np.ndarray, col: np.ndarray, spacing_rc: tuple[float, float]
) -> sitk.Image:
    """A one-slice image whose x axis is ``row`` (along a row) and y axis ``col`` (down)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(pixels[None]))
    img.SetSpacing((float(spacing_rc[1]), float(spacing_rc[0]), 1.0))
    img.SetOrigin(tuple(float(v) for v in origin))
    img.SetDirection(tuple(float(v) for v in np.stack([row, col, np.cross(row, col)], axis=1).ravel()))
    return img


def localizer_images(ct: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """A coronal (AP) and a sagittal (lateral) scout: the CT's mean HU along y and along x,
    head at the top, in the CT's frame of reference as a real topogram is."""
    hu = sitk.GetArrayFromImage(ct).astype(np.float64)
    d = np.array(ct.GetDirection()).reshape(3, 3)
    sx, sy, sz = ct.GetSpacing()
    nx, ny, nz = ct.GetSize()
    down = -d[:, 2]
    top = np.array(ct.TransformContinuousIndexToPhysicalPoint((0.0, (ny - 1) / 2, nz - 1.0)))
    coronal = _plane_image(np.rint(hu.mean(axis=1)[::-1]).astype(np.int16), top, d[:, 0], down, (sz, sx))
    top = np.array(ct.TransformContinuousIndexToPhysicalPoint(((nx - 1) / 2, 0.0, nz - 1.0)))
    sagittal = _plane_image(np.rint(hu.mean(axis=2)[::-1]).astype(np.int16), top, d[:, 1], down, (sz, sy))
    return coronal, sagittal


def slab_mip(ct: sitk.Image, slabs: int = 3, max_slab: int = 5) -> sitk.Image:
    """``slabs`` thick axial maximum-intensity slabs around the CT's middle: a derived
    series with the CT's rows, columns and orientation that a selector must not take."""
    hu = sitk.GetArrayFromImage(ct)
    nz = hu.shape[0]
    thick = max(1, min(max_slab, nz // slabs))
    if nz < slabs:
        raise PhantomError(f"the CT has {nz} slices; a {slabs}-slab MIP needs at least {slabs}")
    start = (nz - slabs * thick) // 2
    mip = np.stack([hu[start + i * thick : start + (i + 1) * thick].max(axis=0) for i in range(slabs)])
    out = sitk.GetImageFromArray(mip)
    sx, sy, sz = ct.GetSpacing()
    out.SetSpacing((sx, sy, sz * thick))
    out.SetDirection(ct.GetDirection())
    out.SetOrigin(ct.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, start + (thick - 1) / 2)))
    return out


def t2_like(mr: sitk.Image, slices: int = 5) -> sitk.Image:
    """A few thick slices through the MR with T2-like contrast (fluid bright, fat dark):
    a second MR series in the same frame of reference that is not the T1."""
    t1 = sitk.GetArrayFromImage(mr).astype(np.float64)
    nz = t1.shape[0]
    step = max(1, nz // (slices + 1))
    picks = np.arange(step, nz, step)[:slices] if nz > slices else np.arange(nz)
    t2 = np.where(t1[picks] > 50.0, np.clip(1100.0 - t1[picks], 0.0, None), t1[picks])
    out = sitk.GetImageFromArray(np.rint(t2).astype(np.float32))
    sx, sy, sz = mr.GetSpacing()
    out.SetSpacing((sx, sy, sz * (picks[1] - picks[0] if picks.size > 1 else 1)))
    out.SetDirection(mr.GetDirection())
    out.SetOrigin(mr.TransformIndexToPhysicalPoint((0, 0, int(picks[0]))))
    return out


# =========================================================================================
# One case as a scanner/PACS export
# =========================================================================================


def _uid(key: str, *parts: str) -> str:
    """A UID hashed from the export's key (seed and options) and the object's role: the same
    export gets the same UIDs, a different seed or variant (another pixel content) others."""
    return generate_uid(entropy_srcs=["phantoms.dicom_export", key, *parts])


def _record(spec: SeriesSpec, files: Sequence[Path]) -> SeriesRecord:
    return SeriesRecord(
        spec.series_uid,
        spec.frame_of_reference_uid,
        spec.modality,
        spec.series_description,
        spec.image_type,
        tuple(files),
    )


class _Variant(TypedDict):
    """The :class:`SeriesSpec` fields that every series of the exam shares."""

    feet_first: bool
    negate_column_cosine: bool
    compressed: bool


class _Frame(_Variant):
    """The :class:`SeriesSpec` fields that the series of one frame of reference share."""

    modality: str
    study: StudySpec
    frame_of_reference_uid: str


class _CTFrame(_Frame):
    """The CT's, with the encoding of its values."""

    rescale_intercept: float
    bits_stored: int


def _variant(options: ExportOptions) -> _Variant:
    """The options every series of the exam shares: one patient position, one encoding."""
    return {
        "feet_first": options.feet_first,
        "negate_column_cosine": options.negate_column_cosine,
        "compressed": options.compressed,
    }


def _ct_series(
    ct: sitk.Image, staging: Path, study: StudySpec, key: str, options: ExportOptions
) -> tuple[SeriesRecord, SeriesRecord, SeriesRecord]:
    """The CT, its localizer (two views, one series) and a derived MIP, one frame of reference."""
    frame = _uid(key, "frame", "CT")
    common: _CTFrame = {
        "modality": "CT",
        "study": study,
        "frame_of_reference_uid": frame,
        "rescale_intercept": CT_INTERCEPT,
        "bits_stored": CT_BITS_STORED,
        **_variant(options),
    }
    scout = SeriesSpec(
        series_uid=_uid(key, "series", "scout"),
        series_description="Topogram 0.6 T20s",
        series_number=1,
        image_type=LOCALIZER,
        **common,
    )
    views = localizer_images(ct)
    scout_files = write_series(views[0], staging, scout)
    scout_files += write_series(views[1], staging, replace(scout, first_instance=2))
    main = SeriesSpec(
        series_uid=_uid(key, "series", "CT"), series_description="HeadNeck 2.5 Br40", series_number=2, **common
    )
    mip = SeriesSpec(
        series_uid=_uid(key, "series", "MIP"),
        series_description="MIP 3 slab",
        series_number=3,
        image_type=DERIVED,
        **common,
    )
    return (
        _record(scout, scout_files),
        _record(main, write_series(ct, staging, main)),
        _record(mip, write_series(slab_mip(ct), staging, mip)),
    )


def _mr_series(
    mr: sitk.Image, staging: Path, study: StudySpec, key: str, options: ExportOptions
) -> tuple[SeriesRecord, SeriesRecord]:
    """The T1 and a T2 distractor (numbered first): the MR's own frame of reference."""
    frame = _uid(key, "frame", "MR")
    common: _Frame = {"modality": "MR", "study": study, "frame_of_reference_uid": frame, **_variant(options)}
    t2 = SeriesSpec(
        series_uid=_uid(key, "series", "T2"), series_description="t2_tse_tra", series_number=4, mr=T2_TSE, **common
    )
    t1 = SeriesSpec(
        series_uid=_uid(key, "series", "T1"),
        series_description="t1_mprage_tra",
        series_number=5,
        mr=T1_MPRAGE,
        **common,
    )
    return (_record(t1, write_series(mr, staging, t1)), _record(t2, write_series(t2_like(mr), staging, t2)))


def _shuffle(files: Sequence[Path], out: Path, seed: int) -> dict[Path, Path]:
    """Move the files into random nested folders ``out/DICOM/<A>/<B>/``, half of them
    without an extension, as PACS exports do: neither folders nor names say the series."""
    rng = np.random.default_rng([seed, 0xD1C0])
    tops = [f"{int(rng.integers(1 << 32)):08X}" for _ in range(3)]
    leaves = [out / "DICOM" / top / f"{int(rng.integers(1 << 32)):08X}" for top in tops for _ in range(2)]
    moved = {}
    for src in sorted(files, key=lambda p: p.name):
        leaf = leaves[int(rng.integers(len(leaves)))]
        leaf.mkdir(parents=True, exist_ok=True)
        dst = leaf / (src.name if rng.random() < 0.5 else src.stem)
        os.replace(src, dst)
        moved[src] = dst
    return moved


def _relocated(record: SeriesRecord, moved: dict[Path, Path]) -> SeriesRecord:
    return replace(record, files=tuple(moved[p] for p in record.files))


def export_images(
    ct: sitk.Image, mr: sitk.Image | None, out: Path, seed: int, options: ExportOptions = ExportOptions()
) -> ExportRecord:
    """Export a CT (HU) and optionally a T1 MR as one study into the new or empty folder
    ``out``, with localizer, MIP and T2 distractors; identical bytes for identical inputs."""
    out = Path(out)
    if seed < 0:
        raise PhantomError(f"seed must be >= 0, got {seed}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PhantomError(f"{out} must be a new or empty folder")
    key = f"{seed}:{options!r}"
    study = StudySpec(
        study_uid=_uid(key, "study"), patient_id=options.patient_id, accession_number=f"PH{seed % 10**8:08d}"
    )
    staging = out / ".staging"
    scout, ct_rec, mip = _ct_series(ct, staging, study, key, options)
    mr_study = replace(study, study_uid=_uid(key, "mr-study")) if options.mr_own_study else study
    t1_rec, t2_rec = _mr_series(mr, staging, mr_study, key, options) if mr is not None else (None, None)
    records = [r for r in (scout, ct_rec, mip, t1_rec, t2_rec) if r is not None]
    moved = _shuffle([p for r in records for p in r.files], out, seed)
    shutil.rmtree(staging)
    result = ExportRecord(
        out,
        study.study_uid,
        _relocated(ct_rec, moved),
        _relocated(scout, moved),
        _relocated(mip, moved),
        None if t1_rec is None else _relocated(t1_rec, moved),
        None if t2_rec is None else _relocated(t2_rec, moved),
    )
    log.info(
        "exported study %s to %s: %s",
        study.study_uid,
        out,
        ", ".join(f"{s.description} ({len(s.files)})" for s in result.series),
    )
    return result


def export_case(
    ct_path: Path, mr_path: Path | None, out: Path, seed: int, options: ExportOptions = ExportOptions()
) -> ExportRecord:
    """:func:`export_images` for a CT and an optional MR read from image files."""
    ct = read_image(Path(ct_path))
    mr = read_image(Path(mr_path)) if mr_path is not None else None
    return export_images(ct, mr, out, seed, options)


# =========================================================================================
# Command line
# =========================================================================================


def _one(pattern: str, folders: Sequence[Path]) -> Path | None:
    hits = sorted(p for folder in folders for p in folder.glob(pattern) if p.is_file())
    if len(hits) > 1:
        raise PhantomError(f"several {pattern} files in {', '.join(map(str, folders))}; name one with --ct/--mr")
    return hits[0] if hits else None


def case_inputs(case_dir: Path) -> tuple[Path, Path | None]:
    """The CT and T1 MR of a case folder written by ``python -m phantoms``: the HaN-Seg raw
    case folder (``<id>_IMG_CT.nrrd``, ``<id>_IMG_MR_T1.nrrd``) or the container layout
    (``[input/]images/ct/*.mha``, ``[input/]images/t1-mri/*.mha``)."""
    case_dir = Path(case_dir)
    ct = _one("*_IMG_CT.nrrd", [case_dir])
    if ct is not None:
        return ct, _one("*_IMG_MR_T1.nrrd", [case_dir])
    roots = [r for r in (case_dir / "images", case_dir / "input" / "images") if r.is_dir()]
    ct = _one("*.mha", [r / "ct" for r in roots])
    if ct is None:
        raise PhantomError(f"{case_dir}: no *_IMG_CT.nrrd and no [input/]images/ct/*.mha")
    return ct, _one("*.mha", [r / "t1-mri" for r in roots])


def _case_id(ct: Path) -> str:
    """The case id in a phantom CT's file name (``case_01_IMG_CT.nrrd``, ``case_01_CT.mha``)."""
    name = ct.name.split(".")[0]
    return re.sub(r"(_IMG)?_CT$", "", name) or "PHANTOM"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m phantoms.dicom_export",
        description="Export a phantom CT (and T1 MR) as a scanner/PACS-like DICOM study.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ct", type=Path, help="CT image file (HU)")
    src.add_argument("--from-case-dir", type=Path, help="a case folder written by python -m phantoms")
    p.add_argument("--mr", type=Path, help="T1 MR image file (with --ct)")
    p.add_argument("--output", type=Path, required=True, help="new or empty output folder")
    p.add_argument("--seed", type=int, default=0, help="UIDs and folder shuffle derive from it")
    p.add_argument("--feet-first", action="store_true", help="write CT and T1 as a feet-first scan")
    p.add_argument("--negate-column-cosine", action="store_true", help="flip the row order of CT and T1")
    p.add_argument("--compress", action="store_true", help="RLE Lossless instead of uncompressed")
    p.add_argument("--mr-own-study", action="store_true", help="the MR in a study of its own (same patient)")
    p.add_argument("--patient-id", help="PatientID (default: the case id in the CT file name)")
    args = p.parse_args(argv)
    if args.mr is not None and args.ct is None:
        p.error("--mr goes with --ct")
    if args.seed < 0:
        p.error("--seed must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse(argv)
    ct, mr = (args.ct, args.mr) if args.ct is not None else case_inputs(args.from_case_dir)
    patient_id = args.patient_id or _case_id(ct)
    options = ExportOptions(patient_id, args.feet_first, args.negate_column_cosine, args.compress, args.mr_own_study)
    record = export_case(ct, mr, args.output, args.seed, options)
    for s in record.series:
        log.info("%s %-20s %s %s", s.modality, s.description, "\\".join(s.image_type), s.series_uid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
