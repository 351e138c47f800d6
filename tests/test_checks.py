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
    arr = np.array([[[0, 924], [1064, 2224]]], np.uint16)   # air, fat, soft tissue, bone + 1024
    ct, warnings = sanitize_ct(img(arr))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ct), [[[-1024, -100], [40, 1200]]])
    assert "not Hounsfield units" in warnings[0]


def test_mr_non_finite_becomes_zero():
    mr, warnings = sanitize_mr(img(np.array([[[np.nan, 5.0]]], np.float32)))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mr), [[[0.0, 5.0]]])
    assert "MR" in warnings[0]
