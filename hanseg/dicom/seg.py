"""The label map as a DICOM Segmentation (SEG), built and validated by highdicom.

One segment per non-empty structure, numbered 1..n in the order of the styles; each is
labelled with its output name, coded as SNOMED CT "Anatomical Structure" / "Organ" (the
same for all: the names, not the codes, say which organ), made by an AUTOMATIC algorithm
named with the model and its version, and drawn in the structure's colour. BINARY
segmentation type (one bit per pixel per segment); frames without any segment are left out.

What highdicom needs from the source CT datasets (found in highdicom 0.28's
``Segmentation.__init__``; pixel data is *not* needed, headers suffice):

* one series of single-frame images (one SeriesInstanceUID and FrameOfReferenceUID),
  ``source_datasets[k]`` being slice k of the label map;
* SOPClassUID, SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID;
* the image plane: Rows, Columns, PixelSpacing, ImageOrientationPatient,
  ImagePositionPatient, SliceThickness, FrameOfReferenceUID;
* the patient and study attributes PatientName, PatientID, PatientBirthDate, PatientSex,
  StudyDate, StudyTime, StudyID, AccessionNumber, ReferringPhysicianName, which highdicom
  reads as attributes (an absent one is an AttributeError). They are Type 2 in a CT, but
  exports stripped of them exist, so absent ones are added empty to a copy (the caller's
  datasets are not changed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from .common import PATIENT_STUDY_KEYWORDS, series_description, write_dataset_atomic
from .identity import OutputIdentity, random_identity
from .names import Provenance, StructureStyle, check_styles

log = logging.getLogger(__name__)

#: Segmented Property Category and Type of every segment (SNOMED CT, DICOM CID 7150/7166).
CATEGORY = codes.SCT.AnatomicalStructure
PROPERTY_TYPE = codes.SCT.Organ
#: CS value: upper case, digits, space or underscore, at most 16 characters.
CONTENT_LABEL = "HANSEG_OARS"


def _with_type2_attributes(datasets: Sequence[Dataset]) -> list[Dataset]:
    """The datasets, with absent patient/study attributes added empty to a copy.

    The copy gets its own element table but shares the elements (pixel data is not
    duplicated); ``copy.copy`` of a pydicom Dataset would share the table and so change
    the caller's dataset.
    """
    out = []
    for ds in datasets:
        missing = [k for k in PATIENT_STUDY_KEYWORDS if k not in ds]
        if missing:
            patched = Dataset(dict(ds.items()))
            if hasattr(ds, "file_meta"):
                patched.file_meta = ds.file_meta
            for keyword in missing:
                setattr(patched, keyword, "")
            ds = patched
        out.append(ds)
    return out


def _segment(number: int, style: StructureStyle, provenance: Provenance) -> hd.seg.SegmentDescription:
    algorithm = hd.AlgorithmIdentificationSequence(
        name=provenance.model_name, family=codes.cid7162.ArtificialIntelligence, version=provenance.model_version
    )
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=style.name,
        segmented_property_category=CATEGORY,
        segmented_property_type=PROPERTY_TYPE,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*style.colour),
    )


def _check_inputs(labels: np.ndarray, sources: Sequence[Dataset]) -> None:
    if labels.dtype != np.uint8 or labels.ndim != 3:
        raise TypeError(f"label map must be a 3D uint8 array, got {labels.ndim}D {labels.dtype}")
    if len(sources) != labels.shape[0]:
        raise ValueError(f"{len(sources)} CT datasets for {labels.shape[0]} slices")
    for k, ds in enumerate(sources):
        if (ds.get("Rows"), ds.get("Columns")) != labels.shape[1:]:
            raise ValueError(
                f"CT slice {k} is {ds.get('Rows')}x{ds.get('Columns')}, the label map "
                f"{labels.shape[1]}x{labels.shape[2]}"
            )


def _ids_per_slice(labels: np.ndarray) -> np.ndarray:
    """Which label ids occur in each slice: bool (slices, 256).

    Counted slice by slice: ``np.bincount`` widens its input to int64, 8 bytes a voxel, so
    one call on the whole map held 2.6 GiB for a 1024x1024x330 CT (the DICOM path's peak).
    """
    found = np.zeros((labels.shape[0], 256), bool)
    for k, plane in enumerate(labels):
        found[k] = np.bincount(plane.ravel(), minlength=256) > 0
    return found


def _segment_numbers(labels: np.ndarray, lookup: np.ndarray, in_slice: np.ndarray) -> np.ndarray:
    """``lookup[labels]`` (segment numbers, 0 for background), written slice by slice and
    only on the slices that hold a written structure.

    The array starts zeroed (``np.zeros``: fresh pages from the OS); pages that are never
    written are never backed by memory, and reading them (highdicom scans every slice for
    empty frames) maps the kernel's shared zero page. A tall CT, whose organs fill part of
    its slices, then costs only those slices. Where the kernel does back them anyway, the
    cost is that of a full copy, as before.
    """
    numbers = np.zeros(labels.shape, np.uint8)
    for k in np.flatnonzero(in_slice[:, lookup > 0].any(axis=1)):
        numbers[k] = lookup[labels[k]]
    return numbers


def build_seg(
    labels: np.ndarray,
    ct_source_datasets: Sequence[Dataset],
    styles: Sequence[StructureStyle],
    provenance: Provenance,
    *,
    identity: OutputIdentity | None = None,
    series_number: int = 2,
) -> hd.seg.Segmentation:
    """The SEG of the non-empty structures of ``labels`` (uint8 z,y,x on the CT grid);
    empty ones are left out and named in the log (:func:`build_rtstruct` returns them).

    ``ct_source_datasets[k]`` is the CT dataset of slice k (see the module docstring for
    what it must hold). ``identity`` gives the UIDs (None: random ones) and what the result
    replaces. Raises ValueError when no structure is non-empty.
    """
    identity = identity or random_identity()
    description = series_description(provenance.model_version, identity.replaces is not None)
    styles = tuple(styles)
    check_styles(styles)
    _check_inputs(labels, ct_source_datasets)
    in_slice = _ids_per_slice(labels)
    present = set(np.flatnonzero(in_slice[:, 1:].any(axis=0)) + 1)
    written = [s for s in styles if s.label in present]
    empty = tuple(s.name for s in styles if s.label not in present)
    if not written:
        raise ValueError("no structure to write: every structure of the map is empty")
    # Label id -> segment number; ids not written (empty, dropped) become background.
    lookup = np.zeros(256, np.uint8)
    for number, style in enumerate(written, start=1):
        lookup[style.label] = number
    seg = hd.seg.Segmentation(
        source_images=_with_type2_attributes(ct_source_datasets),
        pixel_array=_segment_numbers(labels, lookup, in_slice),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment(n, s, provenance) for n, s in enumerate(written, start=1)],
        series_instance_uid=identity.seg_series_uid,
        series_number=series_number,
        sop_instance_uid=identity.seg_sop_uid,
        instance_number=1,
        manufacturer=provenance.manufacturer,
        manufacturer_model_name=provenance.model_name,
        # highdicom annotates software_versions as str | tuple[str] (a 1-tuple) but takes, and
        # checks, any sequence of strings: the list of two is what SoftwareVersions should hold
        software_versions=[provenance.software_version, f"model {provenance.model_version}"[:64]],  # type: ignore[arg-type]
        device_serial_number=provenance.device_serial_number,
        content_label=CONTENT_LABEL,
        content_description=description,
    )
    seg.SeriesDescription = description
    log.info(
        "SEG: %d segments on %d frames; empty, not written: %s",
        len(written),
        int(seg.NumberOfFrames),
        ", ".join(empty) or "none",
    )
    return seg


def write_seg(seg: hd.seg.Segmentation, path: Path | str) -> Path:
    """Write ``seg`` atomically, after the same value checks as an RTSTRUCT."""
    return write_dataset_atomic(seg, path, "SEG")
