"""DICOM SEG writer: segments, codes, references, and frames that decode back to the labels."""

from __future__ import annotations

import io
import os
import subprocess
import tracemalloc

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, SegmentationStorage, generate_uid
from pydicom.valuerep import DA, DT, TM

import hanseg.dicom.seg as seg_module
from hanseg.dicom.identity import random_identity
from hanseg.dicom.names import Provenance, StructureStyle, default_styles
from hanseg.dicom.seg import build_seg, write_seg
from hanseg.labels import LABEL_IDS
from helpers import need_tools

PROVENANCE = Provenance(model_version="0.5.0", software_version="0.1.0")
SHAPE = (4, 6, 7)  # z, y, x


@pytest.fixture(autouse=True)
def strict_pydicom(monkeypatch):
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)
    monkeypatch.setattr(config.settings, "writing_validation_mode", config.RAISE)


def ct_headers(patient: bool = True, shape: tuple[int, int, int] = SHAPE) -> list[Dataset]:
    """Headers of an axial CT series of ``shape``: 0.5 x 0.75 mm pixels, 2 mm slices."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    headers = []
    for k in range(shape[0]):
        h = Dataset()
        h.SOPClassUID, h.SOPInstanceUID = CTImageStorage, generate_uid()
        h.StudyInstanceUID, h.SeriesInstanceUID, h.FrameOfReferenceUID = study, series, frame
        h.Modality, h.PatientID, h.PatientName = "CT", "HN-008", "Seg^Test"
        if patient:
            h.PatientBirthDate, h.PatientSex, h.StudyDate, h.StudyTime = "19700101", "M", "20240103", "090000"
            h.StudyID, h.AccessionNumber, h.ReferringPhysicianName = "S2", "ACC2", ""
        h.ImagePositionPatient = ["-10", "-20", str(-30 + 2 * k)]
        h.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        h.PixelSpacing, h.SliceThickness = ["0.75", "0.5"], "2"
        h.Rows, h.Columns = shape[1], shape[2]
        headers.append(h)
    return headers


def labels_of_three() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[1, 1:5, 1:5] = LABEL_IDS["A_Carotid_L"]
    labels[1, 2:4, 2:4] = 0
    labels[2, 0:2, 0:3] = LABEL_IDS["Brainstem"]
    labels[2, 4:6, 5:7] = LABEL_IDS["Brainstem"]
    labels[3, 5, 6] = LABEL_IDS["SpinalCord"]
    return labels


def decoded_labels(seg: hd.seg.Segmentation, headers: list[Dataset]) -> np.ndarray:
    """The label ids back from the SEG frames, slice by source slice."""
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[h.SOPInstanceUID for h in headers], combine_segments=True, skip_overlap_checks=False
    )
    lookup = np.zeros(256, np.uint8)
    for item in seg.SegmentSequence:
        lookup[item.SegmentNumber] = LABEL_IDS[item.SegmentLabel]
    return lookup[pixels]


def normalised_bytes(seg: hd.seg.Segmentation) -> bytes:
    """The SEG as written, with what differs between two builds of the same input made equal:
    the creation times and highdicom's random DimensionOrganizationUID."""
    seg.ContentDate = seg.InstanceCreationDate = DA("20000101")
    seg.ContentTime = seg.InstanceCreationTime = TM("000000")
    for equipment in seg.ContributingEquipmentSequence:
        equipment.ContributionDateTime = DT("20000101000000")
    for item in [*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence]:
        item.DimensionOrganizationUID = "1.2.3"
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, seg, enforce_file_format=True)
    return buffer.getvalue()


def test_segments_are_the_non_empty_structures_with_codes_and_algorithm():
    seg = build_seg(labels_of_three(), ct_headers(), default_styles(), PROVENANCE)
    assert seg.SOPClassUID == SegmentationStorage and seg.SegmentationType == "BINARY"
    items = list(seg.SegmentSequence)
    assert [i.SegmentNumber for i in items] == [1, 2, 3]
    assert [i.SegmentLabel for i in items] == ["A_Carotid_L", "Brainstem", "SpinalCord"]
    for item in items:
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        [algorithm] = item.SegmentationAlgorithmIdentificationSequence
        assert algorithm.AlgorithmName == PROVENANCE.model_name
        assert algorithm.AlgorithmVersion == "0.5.0"
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == codes.SCT.AnatomicalStructure.value
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Organ.value
        assert len(item.RecommendedDisplayCIELabValue) == 3
    assert seg.Manufacturer == "hanseg" and list(seg.SoftwareVersions) == ["0.1.0", "model 0.5.0"]
    assert "not reviewed" in seg.SeriesDescription and "0.5.0" in seg.ContentDescription


def test_identity_and_references_are_the_cts():
    headers = ct_headers()
    seg = build_seg(labels_of_three(), headers, default_styles(), PROVENANCE)
    assert seg.StudyInstanceUID == headers[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == headers[0].FrameOfReferenceUID
    assert seg.PatientID == "HN-008" and seg.PatientBirthDate == "19700101"
    assert seg.SeriesInstanceUID != headers[0].SeriesInstanceUID
    [series] = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == headers[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence} == {
        h.SOPInstanceUID for h in headers
    }


def test_frames_decode_back_to_the_label_map(tmp_path):
    headers, labels = ct_headers(), labels_of_three()
    seg = build_seg(labels, headers, default_styles(), PROVENANCE)
    assert np.array_equal(decoded_labels(seg, headers), labels)
    back = hd.seg.segread(write_seg(seg, tmp_path / "seg.dcm"))
    assert np.array_equal(decoded_labels(back, headers), labels)
    assert [p.name for p in tmp_path.iterdir()] == ["seg.dcm"]


def test_renamed_and_dropped_structures():
    headers, labels = ct_headers(), labels_of_three()
    styles = (
        StructureStyle(LABEL_IDS["Brainstem"], "BrainStem_auto", (10, 20, 30)),
        StructureStyle(LABEL_IDS["Parotid_L"], "Parotid_L", (1, 1, 1)),
    )  # empty: left out
    seg = build_seg(labels, headers, styles, PROVENANCE)
    assert [i.SegmentLabel for i in seg.SegmentSequence] == ["BrainStem_auto"]
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[h.SOPInstanceUID for h in headers], combine_segments=True
    )
    assert np.array_equal(frames > 0, labels == LABEL_IDS["Brainstem"])  # carotid, cord not in the map


def test_absent_patient_attributes_are_filled_on_a_copy():
    headers = ct_headers(patient=False)
    seg = build_seg(labels_of_three(), headers, default_styles(), PROVENANCE)
    assert seg.PatientBirthDate == "" and seg.AccessionNumber == ""
    assert "PatientBirthDate" not in headers[0], "the caller's dataset was changed"


def test_nothing_to_write_and_mismatched_sizes_are_refused():
    headers = ct_headers()
    with pytest.raises(ValueError, match="every structure"):
        build_seg(np.zeros(SHAPE, np.uint8), headers, default_styles(), PROVENANCE)
    with pytest.raises(ValueError, match="CT datasets for"):
        build_seg(labels_of_three(), headers[:2], default_styles(), PROVENANCE)
    with pytest.raises(ValueError, match="label map"):
        build_seg(labels_of_three()[:, :5], headers, default_styles(), PROVENANCE)
    with pytest.raises(TypeError, match="uint8"):
        build_seg(labels_of_three().astype(np.int32), headers, default_styles(), PROVENANCE)


def test_dciodvfy_finds_no_error(tmp_path):
    path = write_seg(build_seg(labels_of_three(), ct_headers(), default_styles(), PROVENANCE), tmp_path / "seg.dcm")
    result = subprocess.run(
        [*need_tools("dciodvfy"), str(path)], check=False, capture_output=True, text=True, timeout=60
    )
    report = result.stdout + result.stderr
    assert not [line for line in report.splitlines() if line.startswith("Error")], report


def test_the_seg_is_the_one_highdicom_builds_from_the_whole_mapped_array(monkeypatch):
    """Mapping only the slices that hold a written structure changes nothing that is written:
    the SEG equals, byte for byte, the one built from ``lookup[labels]`` in one piece (once the
    creation times and highdicom's random DimensionOrganizationUID are made equal)."""
    headers, labels = ct_headers(), labels_of_three()
    labels[0, 3, 3] = LABEL_IDS["Parotid_L"]  # a slice whose only structure is dropped
    labels[2, 3, 3] = LABEL_IDS["Parotid_L"]  # and one among written structures
    styles = tuple(s for s in default_styles() if s.name != "Parotid_L")
    identity = random_identity()
    built = build_seg(labels, headers, styles, PROVENANCE, identity=identity)
    monkeypatch.setattr(seg_module, "_segment_numbers", lambda labels, lookup, _: lookup[labels])
    reference = build_seg(labels, headers, styles, PROVENANCE, identity=identity)
    assert int(built.NumberOfFrames) == 3  # carotid on slice 1, brainstem on 2, cord on 3
    assert normalised_bytes(built) == normalised_bytes(reference)


def test_no_full_size_temporary_wider_than_the_map():
    """The map is counted slice by slice: np.bincount of the whole map widened it to int64
    (8 bytes a voxel, 2.6 GiB on a 1024x1024x330 CT; with the full ``lookup[labels]`` copy,
    9). What tracemalloc sees (numpy reports its buffers) stays under 4 bytes a voxel: the
    segment-number array, per-slice temporaries and highdicom's frames (about 2.2)."""
    build_seg(labels_of_three(), ct_headers(), default_styles(), PROVENANCE)  # highdicom's one-time loads
    shape = (12, 160, 160)
    labels = np.zeros(shape, np.uint8)
    labels[2:10, 40:120, 50:110] = LABEL_IDS["Brainstem"]
    labels[4:8, 80:90, 60:70] = LABEL_IDS["SpinalCord"]
    headers = ct_headers(shape=shape)
    tracemalloc.start()
    try:
        build_seg(labels, headers, default_styles(), PROVENANCE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * labels.size, f"{peak / labels.size:.1f} bytes a voxel"


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident size from /proc")
def test_slices_without_a_written_structure_take_no_memory():
    """The segment-number array is written only on the slices that hold a written structure;
    the OS backs no page of the others (a full ``lookup[labels]`` copy costs every slice)."""
    labels = np.zeros((24, 1024, 1024), np.uint8)  # 24 MiB, untouched: not resident either
    labels[5, 100:200, 100:200] = LABEL_IDS["Brainstem"]
    labels[15, 300:400, 300:400] = LABEL_IDS["SpinalCord"]
    lookup = np.zeros(256, np.uint8)
    lookup[[LABEL_IDS["Brainstem"], LABEL_IDS["SpinalCord"]]] = [1, 2]
    in_slice = seg_module._ids_per_slice(labels)
    before = resident_bytes()
    numbers = seg_module._segment_numbers(labels, lookup, in_slice)
    grown = resident_bytes() - before
    assert np.array_equal(numbers[[5, 15]], lookup[labels[[5, 15]]]) and np.count_nonzero(numbers) == 2 * 100 * 100
    assert grown < 12 * 2**20, f"{grown / 2**20:.0f} MiB resident for 2 of 24 slices"
