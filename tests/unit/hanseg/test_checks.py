import numpy as np
import SimpleITK as sitk

from hanseg.checks import sanitize_ct, sanitize_mr


def img(arr):
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.5, 0.5, 2.0))
    image.SetOrigin((1.0, 2.0, 3.0))
    return image


def test_valid_hu_ct_is_untouched():
    arr = np.array([[[-1000, -100], [40, 1200]]], np.int16)
    ct, warnings = sanitize_ct(img(arr))
    assert warnings == []
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ct), arr)


def test_nan_and_inf_become_air_with_a_warning():
    arr = np.array([[[np.nan, -100.0], [np.inf, 40.0]]], np.float32)
    ct, warnings = sanitize_ct(img(arr))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ct), [[[-1000, -100], [-1000, 40]]])
    assert len(warnings) == 1 and "2 NaN/inf voxels" in warnings[0]
    assert ct.GetOrigin() == (1.0, 2.0, 3.0) and ct.GetSpacing() == (0.5, 0.5, 2.0)


def test_raw_scanner_values_are_shifted_to_hu():
    arr = np.array([[[0, 924], [1064, 2224]]], np.uint16)  # air, fat, soft tissue, bone + 1024
    ct, warnings = sanitize_ct(img(arr))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ct), [[[-1024, -100], [40, 1200]]])
    assert "not Hounsfield units" in warnings[0]


def test_mr_non_finite_becomes_zero():
    mr, warnings = sanitize_mr(img(np.array([[[np.nan, 5.0]]], np.float32)))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mr), [[[0.0, 5.0]]])
    assert "MR" in warnings[0]


def test_direction_matrices_orthonormal_sheared_and_degenerate():
    import math

    import pytest

    from hanseg.checks import check_direction
    from hanseg.errors import ImageReadError
    from hanseg.io import read_image

    ct = img(np.zeros((4, 5, 6), np.int16))
    ct.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))  # permuted + flipped: fine
    assert check_direction(ct, "CT") == []
    ct.SetDirection((1, 0, 0, 0, 1, 1e-5, 0, 0, 1))  # converter rounding: fine
    assert check_direction(ct, "CT") == []
    t = math.radians(10)
    ct.SetDirection((1, 0, 0, 0, 1, math.sin(t), 0, 0, math.cos(t)))  # tilted gantry: warned
    [warning] = check_direction(ct, "CT")
    assert "not orthonormal (deviation 0.174" in warning
    with pytest.raises(ImageReadError, match=r"degenerate\.mha: cannot be read.*direction matrix is singular"):
        read_image(_degenerate_mha())


def _degenerate_mha():
    """SimpleITK refuses to *set* a singular direction, but a file header can hold one."""
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "degenerate.mha"
    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "TransformMatrix = 1 0 0 0 1 0 0 1 0\nOffset = 0 0 0\nElementSpacing = 1 1 1\n"
        "DimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = LOCAL\n"
    )
    path.write_bytes(header.encode() + np.zeros(8, np.int16).tobytes())
    return path


def test_raw_scanner_values_stay_16_bit_integers():
    """A full-size CT as float32 would double its memory: the shift keeps int16 where it fits."""
    ct, _ = sanitize_ct(img(np.array([[[0, 924], [1064, 4095]]], np.uint16)))
    assert ct.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ct), [[[-1024, -100], [40, 3071]]])


def test_an_mr_stored_with_the_uint16_offset_is_shifted_back_exactly():
    values = np.array([[[0, 17], [2679, 431]]], np.uint16)
    mr, warnings = sanitize_mr(img(values + np.uint16(32768)))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mr), values)
    assert len(warnings) == 1 and "+32768 offset" in warnings[0]


def test_an_mr_without_the_offset_is_left_alone():
    for values in (np.array([[[0, 17], [35000, 431]]], np.uint16), np.array([[[33000.0, 34000.0]]], np.float32)):
        mr, warnings = sanitize_mr(img(values))
        assert warnings == [] and mr.GetPixelID() == img(values).GetPixelID()
        np.testing.assert_array_equal(sitk.GetArrayFromImage(mr), values)
