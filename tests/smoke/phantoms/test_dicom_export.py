"""Tests of the DICOM export of phantoms (phantoms.dicom_export).

The DICOM input path of the product is tested on these files, so they must be right:
read back with SimpleITK/GDCM they give the original HU and geometry exactly (also when
the in-plane axes or the slice order are flipped, or the pixels RLE-compressed), and an
exported case holds the distractor series, UID-named files in shuffled folders, and the
same bytes for the same seed. Tiny images keep this fast; one CLI run covers the layouts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, RLELossless

from phantoms.dicom_export import (
    AXIAL,
    CT_INTERCEPT,
    DERIVED,
    LOCALIZER,
    T1_MPRAGE,
    ExportOptions,
    ExportRecord,
    SeriesSpec,
    StudySpec,
    case_inputs,
    export_case,
    export_images,
    main,
    slab_mip,
    t2_like,
    write_series,
)
from phantoms.errors import PhantomError

STUDY = StudySpec(study_uid="1.2.826.0.1.3680043.8.498.1001", patient_id="P1")


def _rotation(axis: int, angle: float) -> tuple[float, ...]:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return tuple(float(v) for v in m.ravel())


def _tiny_ct() -> sitk.Image:
    """int16 HU over the whole 12-bit range, anisotropic in-plane spacing, rotated axes."""
    hu = np.random.default_rng(7).integers(-1024, 3072, (7, 20, 24)).astype(np.int16)
    hu[0, 0, 0], hu[-1, -1, -1] = -1024, 3071
    ct = sitk.GetImageFromArray(hu)
    ct.SetSpacing((0.9, 1.1, 2.5))
    ct.SetOrigin((-10.5, 20.25, -33.0))
    ct.SetDirection(_rotation(2, 0.2))
    return ct


def _tiny_mr() -> sitk.Image:
    """float32 T1 on its own grid, tilted about x, with fractional values."""
    t1 = (np.random.default_rng(8).random((12, 16, 18)) * 1200).astype(np.float32)
    mr = sitk.GetImageFromArray(t1)
    mr.SetSpacing((1.9, 1.95, 3.6))
    mr.SetOrigin((5.0, -6.0, 7.5))
    mr.SetDirection(_rotation(0, -0.1))
    return mr


def _ct_spec(uid: str = "1.2.826.0.1.3680043.8.498.2001", **kw) -> SeriesSpec:
    return SeriesSpec(
        modality="CT",
        study=STUDY,
        series_uid=uid,
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.3",
        series_description="CT",
        series_number=2,
        rescale_intercept=CT_INTERCEPT,
        bits_stored=12,
        **kw,
    )


def _read(folder: Path, series_uid: str) -> sitk.Image:
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid, recursive=True)
    assert names, f"no files of series {series_uid} under {folder}"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    return reader.Execute()


def _arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img).astype(np.int64)


def _assert_same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-6)


def _assert_same_world(back: sitk.Image, original: sitk.Image) -> None:
    """Every voxel of ``original`` has the same value at the same physical point in ``back``:
    the grids' points coincide, so nearest-neighbour resampling is a pure lookup."""
    looked_up = sitk.Resample(back, original, sitk.Transform(), sitk.sitkNearestNeighbor, -99999.0, sitk.sitkInt32)
    np.testing.assert_array_equal(_arr(looked_up), np.rint(sitk.GetArrayFromImage(original)).astype(np.int64))


def _by_series(folder: Path) -> dict[str, list[pydicom.Dataset]]:
    series: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ds.filename = str(path)
        series[ds.SeriesInstanceUID].append(ds)
    return dict(series)


# =========================================================================================
# write_series
# =========================================================================================


def test_ct_reads_back_with_exact_hu_and_geometry(tmp_path: Path) -> None:
    ct = _tiny_ct()
    files = write_series(ct, tmp_path, _ct_spec())
    back = _read(tmp_path, _ct_spec().series_uid)
    _assert_same_geometry(back, ct)
    np.testing.assert_array_equal(_arr(back), _arr(ct))
    assert len(files) == 7
    d = np.array(ct.GetDirection()).reshape(3, 3)
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        assert path.name == f"{ds.SOPInstanceUID}.dcm"
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == CTImageStorage and ds.Modality == "CT" and ds.InstanceNumber == k + 1
        assert (ds.Rows, ds.Columns) == (20, 24)
        assert [float(v) for v in ds.PixelSpacing] == [1.1, 0.9]  # rows (y) first, then columns (x)
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], d[:, :2].T.ravel(), atol=1e-12)
        np.testing.assert_allclose(
            [float(v) for v in ds.ImagePositionPatient], ct.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-9
        )
        assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation, ds.PhotometricInterpretation) == (
            16,
            12,
            0,
            "MONOCHROME2",
        )
        assert (float(ds.RescaleIntercept), float(ds.RescaleSlope), float(ds.SliceThickness)) == (-1024.0, 1.0, 2.5)
        # The stored values are not HU: a reader that skips the rescale is off by 1024.
        np.testing.assert_array_equal(ds.pixel_array.astype(np.int64), _arr(ct)[k] + 1024)


@pytest.mark.parametrize("feet_first, negate", [(True, False), (False, True), (True, True)])
def test_flipped_axes_keep_the_physical_world(tmp_path: Path, feet_first: bool, negate: bool) -> None:
    ct = _tiny_ct()
    spec = _ct_spec(feet_first=feet_first, negate_column_cosine=negate)
    files = write_series(ct, tmp_path, spec)
    back = _read(tmp_path, spec.series_uid)
    assert back.GetSize() == ct.GetSize()
    assert not np.array_equal(_arr(back), _arr(ct))  # another voxel order...
    _assert_same_world(back, ct)  # ...of the same anatomy at the same place
    d = np.array(ct.GetDirection()).reshape(3, 3)
    first = pydicom.dcmread(files[0])
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    np.testing.assert_allclose(iop[:3], -d[:, 0] if feet_first else d[:, 0], atol=1e-12)
    np.testing.assert_allclose(iop[3:], -d[:, 1] if negate else d[:, 1], atol=1e-12)
    assert first.PatientPosition == ("FFS" if feet_first else "HFS")
    z = [float(pydicom.dcmread(p).ImagePositionPatient[2]) for p in files]
    assert z == sorted(z, reverse=feet_first) and len(set(z)) == 7  # feet first: head slice is instance 1


def test_mr_is_uint16_without_rescale(tmp_path: Path) -> None:
    mr = _tiny_mr()
    spec = SeriesSpec(
        modality="MR",
        study=STUDY,
        series_uid="1.2.826.0.1.3680043.8.498.2002",
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.3002",
        series_description="t1_mprage_tra",
        series_number=5,
        mr=T1_MPRAGE,
    )
    files = write_series(mr, tmp_path, spec)
    back = _read(tmp_path, spec.series_uid)
    assert back.GetPixelID() == sitk.sitkUInt16
    _assert_same_geometry(back, mr)
    np.testing.assert_array_equal(_arr(back), np.rint(sitk.GetArrayFromImage(mr)).astype(np.int64))
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == MRImageStorage and "RescaleSlope" not in ds
    assert (list(ds.ScanningSequence), list(ds.SequenceVariant), ds.MRAcquisitionType, ds.ProtocolName) == (
        ["GR", "IR"],
        ["SP", "MP"],
        "3D",
        "t1_mprage_tra",
    )


def test_rle_lossless_reads_back_identically(tmp_path: Path) -> None:
    ct = _tiny_ct()
    spec = _ct_spec(compressed=True, negate_column_cosine=True)
    files = write_series(ct, tmp_path, spec)
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert ds.SOPInstanceUID == files[0].stem  # compressing keeps the derived UID
    _assert_same_world(_read(tmp_path, spec.series_uid), ct)


def test_values_that_do_not_fit_and_bad_specs_are_refused(tmp_path: Path) -> None:
    ct = _tiny_ct()
    too_low = sitk.Image(ct)
    too_low[0, 0, 0] = -1025  # below intercept -1024: would need a negative stored value
    with pytest.raises(PhantomError, match="do not fit"):
        write_series(too_low, tmp_path, _ct_spec())
    with pytest.raises(PhantomError, match="modality"):
        SeriesSpec(
            modality="US",
            study=STUDY,
            series_uid="1.2",
            frame_of_reference_uid="1.3",
            series_description="x",
            series_number=1,
        )
    sheared = sitk.Image(ct)
    sheared.SetDirection((1.0, 0.1, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    with pytest.raises(PhantomError, match="orthonormal"):
        write_series(sheared, tmp_path, _ct_spec())
    assert not list(tmp_path.iterdir())


# =========================================================================================
# export_images / export_case
# =========================================================================================


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> ExportRecord:
    return export_images(
        _tiny_ct(), _tiny_mr(), tmp_path_factory.mktemp("export") / "out", 11, ExportOptions(patient_id="CASE11")
    )


def test_export_holds_one_study_with_five_series(exported: ExportRecord) -> None:
    assert exported.mr is not None and exported.t2 is not None
    found = _by_series(exported.folder)
    assert set(found) == {s.series_uid for s in exported.series}
    assert len(found) == 5
    every = [ds for datasets in found.values() for ds in datasets]
    assert {ds.StudyInstanceUID for ds in every} == {exported.study_uid}
    assert {ds.PatientID for ds in every} == {"CASE11"}
    for s in exported.series:
        assert sorted(ds.filename for ds in found[s.series_uid]) == sorted(map(str, s.files))
        assert {ds.FrameOfReferenceUID for ds in found[s.series_uid]} == {s.frame_of_reference_uid}
        assert {tuple(ds.ImageType) for ds in found[s.series_uid]} == {s.image_type}
    ct_frame, mr_frame = exported.ct.frame_of_reference_uid, exported.mr.frame_of_reference_uid
    assert ct_frame != mr_frame  # the MR has its own frame of reference, as a real MR does
    assert exported.localizer.frame_of_reference_uid == exported.derived.frame_of_reference_uid == ct_frame
    assert exported.t2.frame_of_reference_uid == mr_frame


def test_export_ct_and_t1_read_back_exactly(exported: ExportRecord) -> None:
    assert exported.mr is not None
    ct, mr = _tiny_ct(), _tiny_mr()
    back_ct, back_mr = _read(exported.folder, exported.ct.series_uid), _read(exported.folder, exported.mr.series_uid)
    _assert_same_geometry(back_ct, ct)
    np.testing.assert_array_equal(_arr(back_ct), _arr(ct))
    _assert_same_geometry(back_mr, mr)
    np.testing.assert_array_equal(_arr(back_mr), np.rint(sitk.GetArrayFromImage(mr)).astype(np.int64))
    assert exported.mr.description == "t1_mprage_tra" and exported.ct.image_type == AXIAL


def test_export_distractor_series(exported: ExportRecord) -> None:
    assert exported.t2 is not None
    scouts = [pydicom.dcmread(p) for p in exported.localizer.files]
    assert len(scouts) == 2 and [ds.InstanceNumber for ds in scouts] == [1, 2]
    for ds in scouts:
        assert list(ds.ImageType) == list(LOCALIZER) and ds.Modality == "CT"
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        normal = np.cross(iop[:3], iop[3:])
        assert abs(normal[2]) < 1e-6  # coronal and sagittal: not axial
    assert (scouts[0].Rows, scouts[0].Columns, scouts[1].Columns) == (7, 24, 20)
    mip = [pydicom.dcmread(p) for p in exported.derived.files]
    assert len(mip) == 3 and all(list(ds.ImageType) == list(DERIVED) for ds in mip)
    assert {(ds.Rows, ds.Columns) for ds in mip} == {(20, 24)}  # same matrix as the CT: a real distractor
    t2 = [pydicom.dcmread(p) for p in exported.t2.files]
    assert len(t2) == 5 and {ds.SeriesDescription for ds in t2} == {"t2_tse_tra"}
    assert {(ds.ScanningSequence, ds.Modality) for ds in t2} == {("SE", "MR")}  # one value: a str
    assert exported.t2.files and _read(exported.folder, exported.t2.series_uid).GetSize() == (18, 16, 5)


def test_export_files_are_uid_named_and_shuffled(exported: ExportRecord) -> None:
    files = [p for p in exported.folder.rglob("*") if p.is_file()]
    assert len(files) == 2 + 7 + 3 + 5 + 12
    for path in files:
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert path.name in (uid, f"{uid}.dcm")
        assert len(path.relative_to(exported.folder).parts) == 4  # DICOM/<A>/<B>/<uid>
    assert {p.name.endswith(".dcm") for p in files} == {True, False}  # both namings occur
    ct_files = exported.ct.files
    assert len({p.parent for p in ct_files}) > 1
    assert sorted(ct_files) != list(ct_files)  # listing order is not slice order
    assert not (exported.folder / ".staging").exists()


def test_export_is_deterministic_for_a_seed(exported: ExportRecord, tmp_path: Path) -> None:
    again = export_images(_tiny_ct(), _tiny_mr(), tmp_path / "again", 11, ExportOptions(patient_id="CASE11"))
    rel = sorted(p.relative_to(exported.folder) for p in exported.folder.rglob("*") if p.is_file())
    assert sorted(p.relative_to(again.folder) for p in again.folder.rglob("*") if p.is_file()) == rel
    assert all((exported.folder / r).read_bytes() == (again.folder / r).read_bytes() for r in rel)
    other = export_images(_tiny_ct(), None, tmp_path / "other", 12, ExportOptions(patient_id="CASE11"))
    assert other.mr is None and other.t2 is None and len(other.series) == 3
    assert other.study_uid != exported.study_uid
    assert not {p.name for p in other.ct.files} & {p.name for p in exported.ct.files}
    flipped = export_images(_tiny_ct(), None, tmp_path / "ffs", 11, ExportOptions("CASE11", feet_first=True))
    assert flipped.ct.series_uid != exported.ct.series_uid  # other pixels, other UIDs


def test_export_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "old.dcm").write_bytes(b"x")
    with pytest.raises(PhantomError, match="new or empty"):
        export_images(_tiny_ct(), None, tmp_path, 0)


# =========================================================================================
# Case folders and the command line
# =========================================================================================


def test_cli_exports_a_raw_case_folder(tmp_path: Path) -> None:
    case = tmp_path / "raw" / "case_07"
    case.mkdir(parents=True)
    sitk.WriteImage(_tiny_ct(), str(case / "case_07_IMG_CT.nrrd"))
    sitk.WriteImage(_tiny_mr(), str(case / "case_07_IMG_MR_T1.nrrd"))
    out = tmp_path / "dicom"
    assert main(["--from-case-dir", str(case), "--output", str(out), "--seed", "3", "--compress", "--feet-first"]) == 0
    found = _by_series(out)
    assert len(found) == 5
    assert {ds.PatientID for datasets in found.values() for ds in datasets} == {"case_07"}
    by_desc = {datasets[0].SeriesDescription: uid for uid, datasets in found.items()}
    _assert_same_world(_read(out, by_desc["HeadNeck 2.5 Br40"]), _tiny_ct())
    _assert_same_world(_read(out, by_desc["t1_mprage_tra"]), _tiny_mr())
    # The distractors are flipped with the exam (feet first throughout) and still in place.
    _assert_same_world(_read(out, by_desc["MIP 3 slab"]), slab_mip(_tiny_ct()))
    _assert_same_world(_read(out, by_desc["t2_tse_tra"]), t2_like(_tiny_mr()))
    assert {pydicom.dcmread(p).file_meta.TransferSyntaxUID for p in out.rglob("*") if p.is_file()} == {RLELossless}


def test_case_inputs_finds_container_layouts(tmp_path: Path) -> None:
    for root in (tmp_path / "a" / "images", tmp_path / "b" / "input" / "images"):
        (root / "ct").mkdir(parents=True)
        (root / "t1-mri").mkdir()
        sitk.WriteImage(_tiny_ct(), str(root / "ct" / "case_02_CT.mha"))
        sitk.WriteImage(_tiny_mr(), str(root / "t1-mri" / "case_02_T1.mha"))
        assert case_inputs(root.parent if root.parent.name != "input" else root.parent.parent) == (
            root / "ct" / "case_02_CT.mha",
            root / "t1-mri" / "case_02_T1.mha",
        )
    with pytest.raises(PhantomError, match="no"):
        case_inputs(tmp_path / "a" / "images" / "ct")
    record = export_case(tmp_path / "a" / "images" / "ct" / "case_02_CT.mha", None, tmp_path / "ct_only", 5)
    assert record.mr is None
    assert {ds.Modality for datasets in _by_series(tmp_path / "ct_only").values() for ds in datasets} == {"CT"}


def test_mr_own_study_puts_the_mr_series_in_a_second_study_of_the_same_patient(tmp_path: Path) -> None:
    record = export_images(
        _tiny_ct(), _tiny_mr(), tmp_path / "out", 11, ExportOptions(patient_id="CASE11", mr_own_study=True)
    )
    assert record.mr is not None and record.t2 is not None
    found = _by_series(record.folder)
    studies = {s.series_uid: {ds.StudyInstanceUID for ds in found[s.series_uid]} for s in record.series}
    assert studies[record.ct.series_uid] == studies[record.localizer.series_uid] == {record.study_uid}
    assert studies[record.mr.series_uid] == studies[record.t2.series_uid] != {record.study_uid}
    assert {ds.PatientID for datasets in found.values() for ds in datasets} == {"CASE11"}
