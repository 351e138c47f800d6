"""RTSTRUCT writer: the DICOM-RT must-haves, and contours that rasterise back exactly on the
CT grid, read the way a planning system reads them (from the slice headers)."""

from __future__ import annotations

import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, RTStructureSetStorage, generate_uid

from hanseg.dicom.common import check_values
from hanseg.dicom.names import Provenance, StructureStyle, default_styles
from hanseg.dicom.rtstruct import (
    DETACHED_STUDY_MANAGEMENT,
    build_rtstruct,
    format_ds,
    format_ds_array,
    write_rtstruct,
)
from hanseg.labels import LABEL_IDS
from helpers import need_tools

PROVENANCE = Provenance(model_version="0.5.0", software_version="0.1.0")
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
#: Column cosine negated (rows run anterior), slices stacked along the normal r x c.
FLIP_Y = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0)
#: Column cosine negated, slices still stacked towards superior (a left-handed grid).
FLIP_Y_Z_UP = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(autouse=True)
def strict_pydicom(monkeypatch):
    """Bad values raise when set and when written, as in pydicom's RAISE mode."""
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)
    monkeypatch.setattr(config.settings, "writing_validation_mode", config.RAISE)


def ds_text(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def make_ct(
    shape_zyx=(5, 8, 9),
    spacing=(0.75, 0.5, 2.5),
    origin=(-12.25, 30.5, -40.0),
    direction=IDENTITY,
    patient: bool = True,
) -> tuple[sitk.Image, list[Dataset]]:
    """A tiny CT image and its slice headers (no pixel data), consistent with each other."""
    ct = sitk.Image(tuple(reversed(shape_zyx)), sitk.sitkInt16)
    ct.SetSpacing(spacing)
    ct.SetOrigin(origin)
    ct.SetDirection(direction)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    d = np.asarray(direction).reshape(3, 3)
    headers = []
    for k in range(shape_zyx[0]):
        h = Dataset()
        h.SOPClassUID, h.SOPInstanceUID = CTImageStorage, generate_uid()
        h.StudyInstanceUID, h.SeriesInstanceUID, h.FrameOfReferenceUID = study, series, frame
        h.Modality = "CT"
        h.PatientID = "HN-007"
        h.PatientName = "Test^Patient"
        if patient:
            h.PatientBirthDate, h.PatientSex = "19600101", "F"
            h.StudyDate, h.StudyTime, h.StudyID = "20240102", "101500", "S1"
            h.AccessionNumber, h.ReferringPhysicianName = "ACC1", "Doc^Tor"
        h.ImagePositionPatient = [ds_text(v) for v in ct.TransformIndexToPhysicalPoint((0, 0, k))]
        h.ImageOrientationPatient = [ds_text(v) for v in (*d[:, 0], *d[:, 1])]
        h.PixelSpacing = [ds_text(spacing[1]), ds_text(spacing[0])]  # row spacing, column spacing
        h.SliceThickness = ds_text(spacing[2])
        h.Rows, h.Columns = shape_zyx[1], shape_zyx[2]
        headers.append(h)
    return ct, headers


def tiny_labels(shape_zyx=(5, 8, 9)) -> np.ndarray:
    """Three OARs: a ring with a hole, two pieces on one slice, single and diagonal voxels."""
    labels = np.zeros(shape_zyx, np.uint8)
    carotid, brainstem, cord = LABEL_IDS["A_Carotid_L"], LABEL_IDS["Brainstem"], LABEL_IDS["SpinalCord"]
    labels[1, 1:6, 1:6] = carotid
    labels[1, 2:5, 2:5] = 0  # the hole
    labels[2, 1:4, 1:3] = carotid
    labels[3, 0:2, 0:2] = brainstem
    labels[3, 5:7, 6:9] = brainstem  # second piece on the same slice
    labels[4, 7, 8] = cord  # a corner voxel: one-voxel square
    labels[0, 3, 3] = labels[0, 4, 4] = cord  # touching diagonally
    return labels


def header_geometry(h: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ipp = np.asarray(h.ImagePositionPatient, float)
    iop = np.asarray(h.ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(v) for v in h.PixelSpacing)
    return ipp, iop[:3] / col_spacing, iop[3:] / row_spacing, np.cross(iop[:3], iop[3:])


def rasterise(ds: Dataset, headers: list[Dataset], roi_number: int) -> np.ndarray:
    """Even-odd fill of one ROI's contours at pixel centres, placed by the headers alone."""
    by_uid = {h.SOPInstanceUID: k for k, h in enumerate(headers)}
    shape = (len(headers), headers[0].Rows, headers[0].Columns)
    mask = np.zeros(shape, bool)
    rows, cols = np.mgrid[0 : shape[1], 0 : shape[2]]
    [roi] = [r for r in ds.ROIContourSequence if r.ReferencedROINumber == roi_number]
    for contour in roi.ContourSequence:
        k = by_uid[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
        ipp, col_step, row_step, normal = header_geometry(headers[k])
        points = np.asarray(contour.ContourData, float).reshape(-1, 3) - ipp
        assert np.allclose(points @ normal, 0, atol=1e-6), "contour off its slice plane"
        x, y = points @ col_step, points @ row_step
        x1, y1 = np.roll(x, -1), np.roll(y, -1)
        for a, b, c, d in zip(x, y, x1, y1):
            if b != d:
                spans = (b > rows) != (d > rows)
                mask[k] ^= spans & (cols < a + (rows - b) * (c - a) / (d - b))
    return mask


@pytest.fixture
def case():
    ct, headers = make_ct()
    labels = tiny_labels()
    ds, empty = build_rtstruct(labels, ct, headers, default_styles(), PROVENANCE)
    return ds, empty, labels, ct, headers


def test_identity_patient_and_study_are_the_cts(case):
    ds, _, _, _, headers = case
    ct0 = headers[0]
    assert ds.SOPClassUID == RTStructureSetStorage == ds.file_meta.MediaStorageSOPClassUID
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.Modality == "RTSTRUCT"
    assert ds.StudyInstanceUID == ct0.StudyInstanceUID
    assert ds.FrameOfReferenceUID == ct0.FrameOfReferenceUID
    assert ds.SeriesInstanceUID not in {ct0.SeriesInstanceUID, ds.SOPInstanceUID}
    assert ds.SOPInstanceUID not in {h.SOPInstanceUID for h in headers}
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
    ):
        assert ds[keyword].value == ct0[keyword].value, keyword


def test_absent_patient_attributes_are_written_empty():
    ct, headers = make_ct(patient=False)
    ds, _ = build_rtstruct(tiny_labels(), ct, headers, default_styles(), PROVENANCE)
    for keyword in (
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
    ):
        assert keyword in ds and not ds[keyword].value, keyword


def test_frame_of_reference_references_every_ct_slice(case):
    ds, _, _, _, headers = case
    [frame] = ds.ReferencedFrameOfReferenceSequence
    assert frame.FrameOfReferenceUID == headers[0].FrameOfReferenceUID
    [study] = frame.RTReferencedStudySequence
    assert study.ReferencedSOPClassUID == DETACHED_STUDY_MANAGEMENT
    assert study.ReferencedSOPInstanceUID == headers[0].StudyInstanceUID
    [series] = study.RTReferencedSeriesSequence
    assert series.SeriesInstanceUID == headers[0].SeriesInstanceUID
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in series.ContourImageSequence] == [
        (h.SOPClassUID, h.SOPInstanceUID) for h in headers
    ]


def test_rois_observations_and_labelling(case):
    ds, empty, _, _, _ = case
    names = ["A_Carotid_L", "Brainstem", "SpinalCord"]
    colours = {s.name: list(s.colour) for s in default_styles()}
    assert [r.ROINumber for r in ds.StructureSetROISequence] == [1, 2, 3]
    assert [r.ROIName for r in ds.StructureSetROISequence] == names
    assert all(r.ROIGenerationAlgorithm == "AUTOMATIC" for r in ds.StructureSetROISequence)
    assert all(r.ReferencedFrameOfReferenceUID == ds.FrameOfReferenceUID for r in ds.StructureSetROISequence)
    assert [r.ReferencedROINumber for r in ds.ROIContourSequence] == [1, 2, 3]
    assert [list(r.ROIDisplayColor) for r in ds.ROIContourSequence] == [colours[n] for n in names]
    assert [
        (o.ObservationNumber, o.ReferencedROINumber, o.RTROIInterpretedType) for o in ds.RTROIObservationsSequence
    ] == [(1, 1, "ORGAN"), (2, 2, "ORGAN"), (3, 3, "ORGAN")]
    assert len(empty) == 27 and "Parotid_L" in empty and "Brainstem" not in empty
    assert ds.ApprovalStatus == "UNAPPROVED"
    assert 0 < len(ds.StructureSetLabel) <= 16 and ds.StructureSetName and ds.StructureSetDate
    for text in (ds.SeriesDescription, ds.StructureSetDescription):
        assert "automatic segmentation, not reviewed" in text.lower() and "0.5.0" in text
    assert ds.Manufacturer == "hanseg" and list(ds.SoftwareVersions) == ["0.1.0", "model 0.5.0"]
    assert len(ds.InstanceCreationDate) == 8 and len(ds.InstanceCreationTime) == 6


def test_contours_are_closed_planar_on_their_slices(case):
    ds, _, _, _, headers = case
    by_uid = {h.SOPInstanceUID: h for h in headers}
    n_contours = 0
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            n_contours += 1
            assert contour.ContourGeometricType == "CLOSED_PLANAR"
            assert contour.NumberOfContourPoints >= 4
            assert len(contour.ContourData) == 3 * contour.NumberOfContourPoints
            [ref] = contour.ContourImageSequence
            header = by_uid[ref.ReferencedSOPInstanceUID]
            assert ref.ReferencedSOPClassUID == header.SOPClassUID
            z = {float(v) for v in contour.ContourData[2::3]}
            assert z == {float(header.ImagePositionPatient[2])}
    # carotid: outer + hole on slice 1, one on slice 2; brainstem: 2 pieces; cord: 1 + 2 squares
    assert n_contours == 3 + 2 + 3


@pytest.mark.parametrize("direction", [IDENTITY, FLIP_Y, FLIP_Y_Z_UP], ids=["identity", "flip-y", "flip-y-z-up"])
def test_contours_rasterise_back_to_the_label_map_exactly(direction):
    ct, headers = make_ct(direction=direction)
    labels = tiny_labels()
    ds, _ = build_rtstruct(labels, ct, headers, default_styles(), PROVENANCE)
    for roi in ds.StructureSetROISequence:
        label = LABEL_IDS[roi.ROIName]
        assert np.array_equal(rasterise(ds, headers, roi.ROINumber), labels == label), roi.ROIName


def test_points_are_the_images_physical_points_of_voxel_corners(case):
    ds, _, _, ct, _ = case
    cord = ds.ROIContourSequence[2].ContourSequence[-1]  # the one-voxel square on slice 4
    points = np.asarray(cord.ContourData, float).reshape(-1, 3)
    corners = {
        tuple(np.round(ct.TransformContinuousIndexToPhysicalPoint((8 + dx, 7 + dy, 4)), 2))
        for dx in (-0.5, 0.5)
        for dy in (-0.5, 0.5)
    }
    assert {tuple(p) for p in points} == corners


def test_every_decimal_string_fits_16_characters(case):
    ds = case[0]
    for elem in ds.iterall():
        if elem.VR == "DS":
            values = elem.value if elem.VM > 1 else [elem.value]
            assert all(len(v.original_string if hasattr(v, "original_string") else str(v)) <= 16 for v in values)


@pytest.mark.parametrize(
    "value",
    [
        0.0,
        -0.0,
        1 / 3,
        -123.456789,
        0.9765625 * 511.5,
        -249.51171875,
        12345678.123456,
        -1e-9,
        1e15 + 0.5,
        -9.87654321e22,
        6.02e-30,
    ],
)
def test_format_ds(value):
    text = format_ds(value)
    assert len(text) <= 16 and text != "-0"
    assert float(text) == pytest.approx(value, rel=1e-6, abs=1e-4)
    pydicom.valuerep.DSfloat(text, validation_mode=config.RAISE)


def test_format_ds_array_is_format_ds_of_each_value():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 300, 200), rng.normal(0, 1e14, 20), [0.0, -0.0, -1e-9, 1e17, -0.00004]])
    assert format_ds_array(values) == [format_ds(v) for v in values]
    assert all(len(t) <= 16 for t in format_ds_array(values))


def test_format_ds_refuses_nan():
    with pytest.raises(ValueError):
        format_ds(float("nan"))


def test_check_values_finds_a_long_decimal_string(case):
    ds = case[0]
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    values = ["1.00000000000000001", *contour.ContourData[1:]]
    contour["ContourData"] = DataElement("ContourData", "DS", values, validation_mode=config.IGNORE)
    with pytest.raises(ValueError, match="ContourData"):
        check_values(ds)


def test_written_file_reads_back_and_no_temporary_is_left(case, tmp_path):
    ds = case[0]
    path = write_rtstruct(ds, tmp_path / "rtstruct.dcm")
    assert [p.name for p in tmp_path.iterdir()] == ["rtstruct.dcm"]
    back = pydicom.dcmread(path)
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert [r.ROIName for r in back.StructureSetROISequence] == ["A_Carotid_L", "Brainstem", "SpinalCord"]


def test_renamed_structures_and_utf8_names():
    ct, headers = make_ct()
    styles = (StructureStyle(LABEL_IDS["Brainstem"], "Hirnstamm_ü", (1, 2, 3)),)
    ds, empty = build_rtstruct(tiny_labels(), ct, headers, styles, PROVENANCE)
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["Hirnstamm_ü"]
    assert ds.SpecificCharacterSet == "ISO_IR 192" and empty == ()


def test_nothing_to_write_and_bad_inputs_are_refused():
    ct, headers = make_ct()
    labels = tiny_labels()
    with pytest.raises(ValueError, match="every structure"):
        build_rtstruct(np.zeros_like(labels), ct, headers, default_styles(), PROVENANCE)
    with pytest.raises(TypeError, match="uint8"):
        build_rtstruct(labels.astype(np.int16), ct, headers, default_styles(), PROVENANCE)
    with pytest.raises(ValueError, match="headers for"):
        build_rtstruct(labels, ct, headers[:-1], default_styles(), PROVENANCE)
    moved = [Dataset(h) for h in headers]
    moved[2].ImagePositionPatient = ["0", "0", "999"]
    with pytest.raises(ValueError, match="slice 2"):
        build_rtstruct(labels, ct, moved, default_styles(), PROVENANCE)
    flipped_ct, _ = make_ct(direction=FLIP_Y)
    with pytest.raises(ValueError, match="ImageOrientationPatient"):
        build_rtstruct(labels, flipped_ct, headers, default_styles(), PROVENANCE)


def test_dciodvfy_finds_no_error(case, tmp_path):
    path = write_rtstruct(case[0], tmp_path / "rtstruct.dcm")
    result = subprocess.run(
        [*need_tools("dciodvfy"), str(path)], check=False, capture_output=True, text=True, timeout=60
    )
    report = result.stdout + result.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, report


def test_a_contour_too_long_for_one_element_is_simplified_within_its_tolerance_and_fits():
    from hanseg.dicom.rtstruct import MAX_ELEMENT_BYTES, contour_values, simplify_closed

    # a right triangle whose hypotenuse is a 0.1 mm staircase: 6,001 vertices, over 64 KiB
    # even at 0.1 mm
    steps = np.arange(0, 300, 0.1)
    ring = np.array([(x, y, -1234.56) for x in steps for y in (x, x + 0.1)] + [(300.0, 0.0, -1234.56)])
    values = contour_values(ring, pixel_mm=0.1)
    assert sum(map(len, values)) + len(values) - 1 <= MAX_ELEMENT_BYTES
    kept = np.asarray(values, float).reshape(-1, 3)
    assert 3 <= len(kept) < len(ring)
    assert np.all(kept[:, 2] == -1234.6)  # still on the slice plane (0.1 mm precision)
    # a staircase strays 0.07 mm from its diagonal: simplified at 0.1 mm it is the diagonal's two ends
    assert len(simplify_closed(ring, 0.1)) == 3  # the triangle's corners


def test_a_short_contour_keeps_every_vertex_at_hundredths_of_a_millimetre():
    from hanseg.dicom.rtstruct import contour_values

    square = np.array([[0.5, 0.5, 10.0], [1.5, 0.5, 10.0], [1.5, 1.5, 10.0], [0.5, 1.5, 10.0]]) * 1.23456
    assert contour_values(square, 1.0)[:3] == ["0.62", "0.62", "12.35"]


def test_simplify_closed_keeps_corners_and_drops_points_on_straight_edges():
    from hanseg.dicom.rtstruct import simplify_closed

    square = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [2, 1, 0], [2, 2, 0], [1, 2, 0], [0, 2, 0], [0, 1, 0]], float)
    kept = simplify_closed(square, 0.01)
    assert {tuple(p) for p in kept} == {(0, 0, 0), (2, 0, 0), (2, 2, 0), (0, 2, 0)}


#: Slices stacked along patient x (a sagittal series): no superior or inferior end.
SAGITTAL = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
CUT_END = "; the organ may continue beyond the scan and is incomplete there."


@pytest.mark.parametrize(
    "direction, first, last",
    [
        (IDENTITY, "first slice (its inferior end, z = -40.0 mm)", "last slice (its superior end, z = -30.0 mm)"),
        (FLIP_Y, "first slice (its superior end, z = -40.0 mm)", "last slice (its inferior end, z = -50.0 mm)"),
        (SAGITTAL, "first slice", "last slice"),
    ],
    ids=["z-up", "z-down", "sagittal"],
)
def test_a_structure_at_the_first_or_last_slice_is_described_as_cut_on_itself(direction, first, last):
    """tiny_labels: the cord lies in slices 0 and 4 of 5, the carotid and brainstem inside."""
    ct, headers = make_ct(direction=direction)
    labels = tiny_labels()
    ds, _ = build_rtstruct(labels, ct, headers, default_styles(), PROVENANCE)
    described = {r.ROIName: r.get("ROIDescription") for r in ds.StructureSetROISequence}
    assert described == {
        "A_Carotid_L": None,
        "Brainstem": None,
        "SpinalCord": f"Cut at the edge of the CT: it reaches the CT's {first} and {last}{CUT_END}",
    }
    labels[0] = 0  # the cord now ends inside the first slice: only its last slice is cut
    labels[3, 0, 0] = 0
    labels[4, 0, 0] = LABEL_IDS["Brainstem"]  # the brainstem reaches the last slice too
    ds, _ = build_rtstruct(labels, ct, headers, default_styles(), PROVENANCE)
    described = {r.ROIName: r.get("ROIDescription") for r in ds.StructureSetROISequence}
    cut_last = f"Cut at the edge of the CT: it reaches the CT's {last}{CUT_END}"
    assert described == {"A_Carotid_L": None, "Brainstem": cut_last, "SpinalCord": cut_last}
