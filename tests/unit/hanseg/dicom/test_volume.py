"""Building one volume from one DICOM series (hanseg.dicom.volume): order, geometry, HU, refusals."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from dicom_fixtures import SeriesSpec, mr_spec, uid, write_series
from hanseg.dicom.scan import Instance, Series, scan_folder
from hanseg.dicom.volume import (
    check_image_geometry,
    check_series,
    read_volume,
    sorted_instances,
)
from hanseg.errors import DicomSeriesError

FEET_FIRST = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # column cosine negated: normal points to −z
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def only_series(root: Path) -> Series:
    (series,) = scan_folder(root).series
    return series


def at_z(zs: list[float], **kwargs) -> SeriesSpec:
    """An axial CT with slices at the given z positions (in file order)."""
    return SeriesSpec(n_slices=len(zs), positions=tuple((-10.0, -20.0, z) for z in zs), **kwargs)


def file_index(spec: SeriesSpec, inst: Instance) -> int:
    """Which slice of ``spec`` (in write order) ``inst`` is, from its SOPInstanceUID."""
    return next(k for k in range(spec.n_slices) if uid(spec.study, spec.series, str(k)) == inst.sop_uid)


def z_of(inst: Instance) -> float:
    """The z of ``inst``'s ImagePositionPatient (every slice written here has one)."""
    assert inst.position is not None
    return inst.position[2]


def assert_voxels_match_headers(image: sitk.Image, ordered: tuple[Instance, ...], spec: SeriesSpec) -> None:
    """Voxel (c, r, k) sits where slice k's header puts pixel (r, c), and holds its HU value."""
    array = sitk.GetArrayFromImage(image)
    row_mm, col_mm = spec.pixel_spacing
    row_cos, col_cos = np.array(spec.orientation[:3]), np.array(spec.orientation[3:])
    for k, inst in enumerate(ordered):
        for r, c in ((0, 0), (2, 1), (4, 3)):
            expected = np.array(inst.position) + c * col_mm * row_cos + r * row_mm * col_cos
            np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((c, r, k)), expected, atol=1e-6)
            stored = 1000 + 100 * file_index(spec, inst) + 10 * r + c
            assert array[k, r, c] == stored * spec.slope + spec.intercept


# --- order and geometry -------------------------------------------------------------------


def test_shuffled_files_and_random_names_give_the_same_volume(tmp_path: Path) -> None:
    spec = SeriesSpec(n_slices=8)
    write_series(tmp_path / "uid", spec)
    names = [f"{random.Random(k).randrange(10**6)}/IM{k * 7 % 8}" for k in range(8)]
    write_series(tmp_path / "random", spec, names=names)
    a, a_order = read_volume(only_series(tmp_path / "uid"))
    b, b_order = read_volume(only_series(tmp_path / "random"))
    assert [i.sop_uid for i in a_order] == [i.sop_uid for i in b_order]
    assert [z_of(i) for i in a_order] == [30.0 + 2 * k for k in range(8)]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert (a.GetOrigin(), a.GetSpacing(), a.GetDirection()) == (b.GetOrigin(), b.GetSpacing(), b.GetDirection())
    assert a.GetSize() == (4, 5, 8) and a.GetSpacing() == pytest.approx((0.8, 0.9, 2.0))
    assert_voxels_match_headers(b, b_order, spec)


def test_sorted_along_the_normal_not_by_instance_number_or_name(tmp_path: Path) -> None:
    spec = at_z([40.0, 30.0, 36.0, 32.0, 38.0, 34.0])
    write_series(tmp_path, spec, names=[f"{k:02d}" for k in range(6)])
    ordered = sorted_instances(only_series(tmp_path))
    assert [z_of(i) for i in ordered] == [30.0, 32.0, 34.0, 36.0, 38.0, 40.0]
    assert [i.path.name for i in ordered] == ["01", "03", "05", "02", "04", "00"]
    assert [i.instance_number for i in ordered] == [5, 3, 1, 4, 2, 6]


def test_positions_decreasing_in_file_order(tmp_path: Path) -> None:
    spec = at_z([40.0, 38.0, 36.0, 34.0, 32.0, 30.0])
    write_series(tmp_path, spec)
    image, ordered = read_volume(only_series(tmp_path))
    assert image.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert image.GetOrigin() == (-10.0, -20.0, 30.0)
    assert [file_index(spec, i) for i in ordered] == [5, 4, 3, 2, 1, 0]
    assert_voxels_match_headers(image, ordered, spec)


def test_feet_first_normal_pointing_minus_z(tmp_path: Path) -> None:
    spec = SeriesSpec(
        orientation=FEET_FIRST,
        n_slices=6,
        positions=tuple((-10.0, -20.0, z) for z in (24.0, 30.0, 20.0, 28.0, 22.0, 26.0)),
    )
    write_series(tmp_path, spec)
    image, ordered = read_volume(only_series(tmp_path))
    direction = np.array(image.GetDirection()).reshape(3, 3)
    np.testing.assert_array_equal(direction[:, 2], [0.0, 0.0, -1.0])  # third column = the normal
    np.testing.assert_array_equal(direction[:, 1], [0.0, -1.0, 0.0])
    assert image.GetSpacing()[2] == pytest.approx(2.0)
    assert [z_of(i) for i in ordered] == [30.0, 28.0, 26.0, 24.0, 22.0, 20.0]
    assert_voxels_match_headers(image, ordered, spec)


def test_sagittal_mr_is_read_when_no_axial_rule_is_asked(tmp_path: Path) -> None:
    spec = mr_spec(orientation=SAGITTAL, n_slices=6)
    write_series(tmp_path, spec)
    image, ordered = read_volume(only_series(tmp_path))
    direction = np.array(image.GetDirection()).reshape(3, 3)
    np.testing.assert_array_equal(direction[:, 2], np.cross(SAGITTAL[:3], SAGITTAL[3:]))
    assert image.GetPixelID() == sitk.sitkFloat32
    assert_voxels_match_headers(image, ordered, spec)


def test_small_jitter_in_positions_is_tolerated(tmp_path: Path) -> None:
    write_series(tmp_path, at_z([30.0, 32.004, 33.998, 36.0, 38.005, 40.0]))
    image, _ = read_volume(only_series(tmp_path))
    assert image.GetSize() == (4, 5, 6) and image.GetSpacing()[2] == pytest.approx(2.0)


def test_geometry_guard_catches_a_mirrored_image(tmp_path: Path) -> None:
    write_series(tmp_path, SeriesSpec())
    series = only_series(tmp_path)
    image, _ = read_volume(series)
    ordered, geometry = check_series(series)
    mirrored = sitk.Image(image)
    mirrored.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    with pytest.raises(
        DicomSeriesError,
        match=r"the decoded volume's geometry disagrees with the DICOM "
        r"headers: direction \[\[1\.0, 0\.0, 0\.0\], \[0\.0, 1\.0, 0\.0\], "
        r"\[0\.0, 0\.0, -1\.0\]\] instead of",
    ):
        check_image_geometry(mirrored, ordered, geometry, series)


# --- values -------------------------------------------------------------------------------


def test_ct_comes_out_in_hu_as_int16(tmp_path: Path) -> None:
    write_series(tmp_path, SeriesSpec(stored=np.full((6, 5, 4), 1000)))
    image, _ = read_volume(only_series(tmp_path))
    assert image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), np.full((6, 5, 4), -24, dtype=np.int16))


def test_ct_with_a_fractional_slope_is_float32(tmp_path: Path) -> None:
    write_series(tmp_path, SeriesSpec(stored=np.full((6, 5, 4), 1000), slope=2.5))
    image, _ = read_volume(only_series(tmp_path))
    assert image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), np.full((6, 5, 4), 1476.0, dtype=np.float32))


# --- refusals -----------------------------------------------------------------------------


def refusal(tmp_path: Path, spec: SeriesSpec, **kwargs) -> str:
    """The message of the DicomSeriesError that reading ``spec`` raises."""
    write_series(tmp_path, spec)
    series = only_series(tmp_path)
    with pytest.raises(DicomSeriesError) as err:
        read_volume(series, **kwargs)
    assert str(err.value).startswith(f"{series.label}: ")
    return str(err.value)


def test_missing_slice(tmp_path: Path) -> None:
    message = refusal(tmp_path, at_z([30.0, 32.0, 34.0, 38.0, 40.0, 42.0]))
    assert "1 slice missing between z=34.00 and z=38.00 mm" in message
    assert "gap 4.00 mm, spacing 2.00 mm elsewhere" in message
    assert message.endswith("export the complete series again from the scanner or PACS")


def test_duplicate_position_names_both_files(tmp_path: Path) -> None:
    spec = at_z([30.0, 32.0, 34.0, 34.0, 36.0, 38.0])
    paths = write_series(tmp_path, spec)
    with pytest.raises(DicomSeriesError) as err:
        read_volume(only_series(tmp_path))
    assert "two files at the same slice position z=34.00 mm: " in str(err.value)
    assert str(paths[2]) in str(err.value) and str(paths[3]) in str(err.value)
    assert str(err.value).endswith("remove one of them from the input")


def test_unequal_spacing(tmp_path: Path) -> None:
    message = refusal(tmp_path, at_z([30.0, 32.0, 34.0, 35.5, 37.5, 39.5]))
    assert "unequal slice spacing: 1.50 mm between z=34.00 and z=35.50 mm" in message


def test_mixed_frame_of_reference(tmp_path: Path) -> None:
    message = refusal(tmp_path, SeriesSpec(overrides={3: {"FrameOfReferenceUID": uid("other")}}))
    assert "mixes frames of reference: " in message and uid("other") in message


def test_mixed_orientation(tmp_path: Path) -> None:
    tilted = ["1", "0", "0", "0", "0.999848", "0.017452"]
    message = refusal(tmp_path, SeriesSpec(overrides={2: {"ImageOrientationPatient": tilted}}))
    assert "mixes orientations" in message and "(1.0, 0.0, 0.0, 0.0, 0.999848, 0.017452)" in message


def test_mixed_matrix_size(tmp_path: Path) -> None:
    message = refusal(tmp_path, SeriesSpec(overrides={1: {"Rows": 6}}))
    assert "mixes matrix sizes" in message and "is 5x4, " in message and "is 6x4 (rows x columns)" in message


def test_non_axial_is_refused_when_asked(tmp_path: Path) -> None:
    message = refusal(tmp_path, SeriesSpec(orientation=SAGITTAL), axial_tolerance_deg=10.0)
    assert "is not axial (slice normal 90° from the patient axis, more than 10°)" in message


def test_gantry_tilt_is_refused(tmp_path: Path) -> None:
    shift = 2.0 * math.tan(math.radians(15.0))  # y moves with z: a stack tilted 15°
    spec = SeriesSpec(positions=tuple((-10.0, -20.0 + k * shift, 30.0 + 2.0 * k) for k in range(6)))
    message = refusal(tmp_path, spec)
    assert "is a gantry-tilted series (about 15.0° tilt" in message
    assert "gantry-tilted series are not supported" in message
    assert message.endswith(
        "reconstruct or resample the scan to axial slices at the scanner or TPS and use that series"
    )


def test_multi_frame_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, SeriesSpec(overrides={0: {"NumberOfFrames": 3}}))
    assert "is a multi-frame (enhanced) image with 3 frames in one file, which is not supported" in message
    assert message.endswith("export the series as classic single-frame images (one file per slice)")


def test_truncated_pixel_data_names_the_file(tmp_path: Path) -> None:
    paths = write_series(tmp_path, SeriesSpec())
    paths[2].write_bytes(paths[2].read_bytes()[:-15])
    with pytest.raises(DicomSeriesError, match=rf"its pixel data cannot be decoded \({paths[2]}: "):
        read_volume(only_series(tmp_path))


def test_broken_orientation_is_refused(tmp_path: Path) -> None:
    parallel = ["1", "0", "0", "1", "0", "0"]
    message = refusal(tmp_path, SeriesSpec(overrides={4: {"ImageOrientationPatient": parallel}}))
    assert "has a broken ImageOrientationPatient (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)" in message


def test_missing_slice_of_a_sagittal_series_is_named_by_position(tmp_path: Path) -> None:
    xs = [0.0, 2.0, 4.0, 8.0, 10.0, 12.0]  # sagittal normal is (-1, 0, 0): along-normal key is -x
    spec = mr_spec(orientation=SAGITTAL, n_slices=6, positions=tuple((x, -20.0, 30.0) for x in xs))
    message = refusal(tmp_path, spec)
    assert "1 slice missing between position (8.00, -20.00, 30.00) and position (4.00, -20.00, 30.00) mm" in message
