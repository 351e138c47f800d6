"""Find every DICOM instance under a folder and group them into studies and series.

Only headers are read (``stop_before_pixels``), so scanning a folder of a few thousand
slices costs seconds and no pixel memory. Folder nesting and file names carry no meaning:
PACS exports use UID-named files, numbered files, or no extension at all, in any tree.

A file that is not DICOM, or is corrupt, becomes an :class:`Unreadable` record with the
reason and a warning in the log; it never stops the scan, because one broken file in an
export must not hide the good series beside it. Hidden files (and hidden folders) and
``DICOMDIR`` index files are skipped silently: they are not images.

Geometry fields are kept as the scanner wrote them (LPS millimetres, see :mod:`hanseg.io`);
:mod:`hanseg.dicom.volume` turns them into a volume and checks them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, overload

import pydicom
from pydicom.errors import InvalidDicomError

if TYPE_CHECKING:  # only for annotations: hanseg.geometry imports SimpleITK and scipy
    from ..geometry import Vec3

log = logging.getLogger(__name__)

#: ImageOrientationPatient: the row cosine (x,y,z) then the column cosine (x,y,z).
Orientation = tuple[float, float, float, float, float, float]

#: SOP Class of a DICOMDIR (Media Storage Directory): an index, never an image.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class Instance:
    """The header fields of one DICOM file that selection and volume building need."""

    path: Path
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    image_type: tuple[str, ...]
    series_description: str
    series_number: int | None
    frame_of_reference_uid: str
    orientation: Orientation | None  # ImageOrientationPatient: row cosine, column cosine
    position: Vec3 | None  # ImagePositionPatient of the first voxel (mm)
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) in mm
    rows: int
    columns: int
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    protocol_name: str
    mr_acquisition_type: str
    number_of_frames: int
    repetition_time: float | None = None  # ms; MR T1 fallback when descriptions are empty
    echo_time: float | None = None  # ms
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    instance_number: int | None = None  # kept for messages only; never used for ordering


@dataclass(frozen=True)
class Unreadable:
    """A file under the scanned folder that could not be used, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Series:
    """The instances sharing one SeriesInstanceUID within one study (in path order)."""

    study_uid: str
    series_uid: str
    modality: str
    description: str
    instances: tuple[Instance, ...]

    @property
    def label(self) -> str:
        """How messages name the series: UID, description and number of files."""
        n = len(self.instances)
        return f"series {self.series_uid} '{self.description}' ({n} file{'s' if n != 1 else ''})"


@dataclass(frozen=True)
class Study:
    """The series sharing one StudyInstanceUID."""

    study_uid: str
    patient_id: str
    series: tuple[Series, ...]


@dataclass(frozen=True)
class Scan:
    """Everything found under ``folder``: studies of series of instances, and the rejects."""

    folder: Path
    studies: tuple[Study, ...]
    unreadable: tuple[Unreadable, ...]

    @property
    def series(self) -> tuple[Series, ...]:
        return tuple(s for study in self.studies for s in study.series)


# --- reading one header -------------------------------------------------------------------


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _strings(ds: pydicom.Dataset, keyword: str) -> tuple[str, ...]:
    """A multi-valued string element as a tuple of upper-case values (one value → 1-tuple)."""
    value = ds.get(keyword)
    if value is None or value == "":
        return ()
    values = value if isinstance(value, pydicom.multival.MultiValue) else [value]
    return tuple(str(v).strip().upper() for v in values)


@overload
def _floats(ds: pydicom.Dataset, keyword: str, n: Literal[2]) -> tuple[float, float] | None: ...
@overload
def _floats(ds: pydicom.Dataset, keyword: str, n: Literal[3]) -> Vec3 | None: ...
@overload
def _floats(ds: pydicom.Dataset, keyword: str, n: Literal[6]) -> Orientation | None: ...
def _floats(ds: pydicom.Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    """A numeric multi-value of exactly ``n`` numbers, or None when absent or malformed."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    values = list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]
    if len(values) != n:
        return None
    return tuple(float(v) for v in values)


_Number = TypeVar("_Number", int, float)
_Default = TypeVar("_Default", int, float, None)


def _number(ds: pydicom.Dataset, keyword: str, cast: type[_Number], default: _Default) -> _Number | _Default:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    return cast(float(value)) if cast is int else cast(value)


def instance_from_dataset(ds: pydicom.Dataset, path: Path) -> Instance:
    """The :class:`Instance` record of a header already read (raises on missing UIDs)."""
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not _text(ds, keyword):
            raise ValueError(f"no {keyword}")
    return Instance(
        path=path,
        patient_id=_text(ds, "PatientID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        modality=_text(ds, "Modality").upper(),
        image_type=_strings(ds, "ImageType"),
        series_description=_text(ds, "SeriesDescription"),
        series_number=_number(ds, "SeriesNumber", int, None),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        position=_floats(ds, "ImagePositionPatient", 3),
        pixel_spacing=_floats(ds, "PixelSpacing", 2),
        rows=_number(ds, "Rows", int, 0),
        columns=_number(ds, "Columns", int, 0),
        scanning_sequence=_strings(ds, "ScanningSequence"),
        sequence_variant=_strings(ds, "SequenceVariant"),
        protocol_name=_text(ds, "ProtocolName"),
        mr_acquisition_type=_text(ds, "MRAcquisitionType").upper(),
        number_of_frames=_number(ds, "NumberOfFrames", int, 1),
        repetition_time=_number(ds, "RepetitionTime", float, None),
        echo_time=_number(ds, "EchoTime", float, None),
        rescale_slope=_number(ds, "RescaleSlope", float, 1.0),
        rescale_intercept=_number(ds, "RescaleIntercept", float, 0.0),
        instance_number=_number(ds, "InstanceNumber", int, None),
    )


def read_header(path: Path) -> pydicom.Dataset:
    """The header of ``path``. Files without the 128-byte preamble are accepted only if
    they then carry a SOPClassUID: ``force=True`` alone would "read" any file at all."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        if "SOPClassUID" not in ds:
            raise ValueError("not a DICOM file (no preamble and no SOPClassUID)") from None
        return ds


def read_instance(path: Path) -> Instance | Unreadable | None:
    """The record of one file: an Instance, an Unreadable, or None for a DICOMDIR."""
    try:
        ds = read_header(path)
        if _text(ds, "SOPClassUID") == DICOMDIR_SOP_CLASS:
            return None
        # pydicom parses lazily: building the record is where a corrupt element surfaces
        return instance_from_dataset(ds, path)
    except Exception as exc:  # any reader failure makes the file unreadable
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("skipping %s: cannot be read as DICOM (%s)", path, reason)
        return Unreadable(path, reason)


# --- walking and grouping -----------------------------------------------------------------


def candidate_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` at any depth, in path order, without hidden
    files or folders and without files named DICOMDIR."""
    files = []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if any(p.startswith(".") for p in parts) or path.name.upper() == "DICOMDIR":
            continue
        if path.is_file():
            files.append(path)
    return files


def group_instances(instances: list[Instance]) -> tuple[Study, ...]:
    """Studies of series, both in UID order; a series' instances stay in path order."""
    by_series: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    for inst in instances:
        by_series[(inst.study_uid, inst.series_uid)].append(inst)
    by_study: dict[str, list[Series]] = defaultdict(list)
    for (study_uid, series_uid), members in sorted(by_series.items()):
        first = members[0]
        by_study[study_uid].append(
            Series(study_uid, series_uid, first.modality, first.series_description, tuple(members))
        )
    return tuple(
        Study(uid, series[0].instances[0].patient_id, tuple(series)) for uid, series in sorted(by_study.items())
    )


def scan_folder(folder: Path) -> Scan:
    """Read the header of every file under ``folder`` and group them (see module doc)."""
    folder = Path(folder)
    instances: list[Instance] = []
    unreadable: list[Unreadable] = []
    for path in candidate_files(folder):
        record = read_instance(path)
        if isinstance(record, Instance):
            instances.append(record)
        elif isinstance(record, Unreadable):
            unreadable.append(record)
    scan = Scan(folder, group_instances(instances), tuple(unreadable))
    log.info(
        "scanned %s: %d DICOM files in %d series of %d studies, %d unreadable files",
        folder,
        len(instances),
        len(scan.series),
        len(scan.studies),
        len(unreadable),
    )
    return scan
