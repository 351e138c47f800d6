import os

import numpy as np
import pytest
import SimpleITK as sitk

from hanseg.errors import ImageReadError, InvalidImageError
from hanseg.io import array_zyx, image_like, read_image, same_grid, write_label_map

FLIP_X = (-1, 0, 0, 0, 1, 0, 0, 0, 1)
c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
OBLIQUE = (c, -s, 0, s, c, 0, 0, 0, 1)
GRIDS = {
    "identity": ((0.5, 0.5, 2.0), (10.0, -20.0, 5.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)),
    "flipped": ((0.7, 0.6, 2.5), (-3.0, 4.0, -50.0), FLIP_X),
    "oblique": ((1.0, 0.8, 3.0), (1.5, 2.5, 3.5), OBLIQUE),
    "all_axes_flipped": ((0.9, 1.1, 1.3), (100.0, 100.0, 100.0), (-1, 0, 0, 0, -1, 0, 0, 0, -1)),
}


def make_ct(grid: str, shape_zyx=(6, 7, 9)) -> sitk.Image:
    spacing, origin, direction = GRIDS[grid]
    arr = np.arange(np.prod(shape_zyx), dtype=np.int16).reshape(shape_zyx) - 1000
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing), img.SetOrigin(origin), img.SetDirection(direction)
    return img


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".nii.gz"])
def test_read_write_round_trip_keeps_grid_and_values(tmp_path, grid, suffix):
    ct = make_ct(grid)
    path = tmp_path / f"case_CT{suffix}"
    sitk.WriteImage(ct, str(path), True)
    back = read_image(path)
    assert same_grid(back, ct, atol=1e-4)
    np.testing.assert_array_equal(array_zyx(back, np.int16), sitk.GetArrayFromImage(ct))


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_label_map_has_the_cts_exact_grid(tmp_path, grid, suffix):
    ct = make_ct(grid)
    labels = (np.arange(6 * 7 * 9).reshape(6, 7, 9) % 31).astype(np.uint8)
    out = write_label_map(labels, ct, tmp_path / f"case_seg{suffix}")
    back = sitk.ReadImage(str(out))
    assert back.GetPixelID() == sitk.sitkUInt8
    assert back.GetSize() == ct.GetSize()
    assert back.GetSpacing() == pytest.approx(ct.GetSpacing(), abs=1e-6)
    assert back.GetOrigin() == pytest.approx(ct.GetOrigin(), abs=1e-6)
    assert back.GetDirection() == pytest.approx(ct.GetDirection(), abs=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)
    assert os.listdir(tmp_path) == [out.name]  # no temporary file left behind


def test_axis_order_is_zyx():
    img = sitk.Image(9, 7, 6, sitk.sitkUInt8)  # x, y, z
    img.SetPixel(8, 1, 2, 5)  # x=8, y=1, z=2
    arr = array_zyx(img, np.uint8)
    assert arr.shape == (6, 7, 9) and arr[2, 1, 8] == 5


def test_write_rejects_wrong_dtype_and_shape(tmp_path):
    ct = make_ct("identity")
    with pytest.raises(TypeError):
        write_label_map(np.zeros((6, 7, 9), np.int32), ct, tmp_path / "x.mha")
    with pytest.raises(ValueError):
        image_like(np.zeros((7, 6, 9), np.uint8), ct)
    assert not list(tmp_path.iterdir())


def test_unreadable_and_non_3d_images_raise_named_errors(tmp_path):
    bad = tmp_path / "broken_CT.mha"
    bad.write_bytes(b"ObjectType = Image\nNDims = 3\n garbage")
    with pytest.raises(ImageReadError, match=r"broken_CT\.mha"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="not a supported image"):
        read_image(tmp_path / "notes.txt")
    flat = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkInt16), str(flat))
    with pytest.raises(InvalidImageError, match="3D"):
        read_image(flat)


@pytest.mark.parametrize(
    "content",
    [b"garbage\x00\x01", b"ObjectType = Image\nNDims = 3\n garbage", b"ObjectType = Image\n"],
    ids=["no-reader", "bad-header", "truncated-header"],
)
def test_an_unreadable_image_is_named_once_and_its_folder_not_at_all(tmp_path, content):
    bad = tmp_path / "case_01_CT.mha"
    bad.write_bytes(content)
    with pytest.raises(ImageReadError) as raised:
        read_image(bad)
    message = str(raised.value)
    assert message.startswith("case_01_CT.mha: cannot be read as an image (")
    assert message.count("case_01_CT.mha") == 1 and str(tmp_path) not in message
