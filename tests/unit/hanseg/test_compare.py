"""hanseg.compare, the check test.sh relies on: it must catch a wrong grid, type or label."""

import numpy as np
import SimpleITK as sitk

from hanseg.compare import compare_label_maps, main, per_oar_dice


def save(path, arr, spacing=(1.0, 1.0, 2.0), dtype=np.uint8):
    img = sitk.GetImageFromArray(arr.astype(dtype))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


def base():
    arr = np.zeros((6, 10, 10), np.uint8)
    arr[1:5, 2:8, 2:8] = 3
    arr[2:4, 0:2, 0:2] = 7
    return arr


def test_identical_maps_pass(tmp_path):
    a, b = save(tmp_path / "a.mha", base()), save(tmp_path / "b.mha", base())
    assert compare_label_maps(a, b, 0.99) == []
    assert main(["--label-map", str(a), "--expected", str(b)]) == 0


def test_swapped_label_fails(tmp_path):
    wrong = base()
    wrong[wrong == 7] = 8  # the same shape under another OAR id (the nnU-Net label-order bug)
    problems = compare_label_maps(save(tmp_path / "a.mha", wrong), save(tmp_path / "b.mha", base()), 0.99)
    assert len(problems) == 1 and "'Cavity_Oral': 0.0" in problems[0] and "'Cochlea_L': 0.0" in problems[0]
    assert "Arytenoid" not in problems[0]


def test_grid_and_type_differences_fail(tmp_path):
    expected = save(tmp_path / "b.mha", base())
    assert "spacing" in compare_label_maps(save(tmp_path / "s.mha", base(), spacing=(1, 1, 3)), expected, 0.99)[0]
    assert "pixel type" in compare_label_maps(save(tmp_path / "t.mha", base(), dtype=np.int16), expected, 0.99)[0]
    assert "size" in compare_label_maps(save(tmp_path / "z.mha", base()[1:]), expected, 0.99)[0]
    assert main(["--label-map", str(tmp_path / "missing.mha"), "--expected", str(expected)]) == 1


def test_dice_per_oar_tolerates_a_few_boundary_voxels():
    a, b = base(), base()
    b[1, 2, 2] = 0  # one voxel of 144 differs
    scores = per_oar_dice(a, b)
    assert set(scores) == {"Arytenoid", "Cavity_Oral"}  # ids 3 and 7, alphabetical
    assert scores["Cavity_Oral"] == 1.0 and 0.99 < scores["Arytenoid"] < 1.0
