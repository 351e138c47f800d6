"""Property tests (hypothesis) over image headers and sizes for the I/O layer.

Any 3D grid (size 1..9 per axis, spacing 0.05..8 mm, any origin, any rotation with or
without flips, a few pixel types, three file formats) must survive read → label map write →
read with its exact grid; a damaged file must raise ImageReadError, never anything else.
"""

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hanseg.errors import HansegError, ImageReadError
from hanseg.io import read_image, write_label_map

SUFFIXES = [".mha", ".nrrd", ".nii.gz"]
DTYPES = [np.int16, np.uint8, np.float32, np.int32]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def rotation(angles: tuple[float, float, float], flips: tuple[bool, bool, bool]) -> np.ndarray:
    """A proper rotation from three Euler angles, then optional axis flips (det ±1)."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx @ np.diag([-1.0 if f else 1.0 for f in flips])


@st.composite
def images(draw) -> sitk.Image:
    size = draw(st.tuples(*[st.integers(1, 9)] * 3))  # x, y, z
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    arr = np.random.default_rng(seed).integers(-1000, 2000, size[::-1]).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(draw(st.tuples(*[st.floats(0.05, 8.0)] * 3)))
    img.SetOrigin(draw(st.tuples(*[st.floats(-500.0, 500.0)] * 3)))
    angles = draw(st.tuples(*[st.floats(-np.pi, np.pi)] * 3))
    img.SetDirection(rotation(angles, draw(st.tuples(*[st.booleans()] * 3))).ravel().tolist())
    return img


def assert_same_grid(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    # NIfTI stores the header in float32: compare relative to the values' size.
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-5)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-4)


@FUZZ
@given(image=images(), suffix=st.sampled_from(SUFFIXES))
def test_any_grid_round_trips_and_gets_a_label_map_on_it(tmp_path_factory, image, suffix):
    folder = Path(tmp_path_factory.mktemp("fuzz"))
    path = folder / f"ct{suffix}"
    sitk.WriteImage(image, str(path))
    ct = read_image(path)
    assert_same_grid(ct, image)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(ct), sitk.GetArrayViewFromImage(image))
    labels = (np.arange(np.prod(ct.GetSize())) % 31).astype(np.uint8).reshape(ct.GetSize()[::-1])
    out = write_label_map(labels, ct, folder / f"seg{suffix}")
    seg = sitk.ReadImage(str(out))
    assert seg.GetPixelID() == sitk.sitkUInt8
    assert_same_grid(seg, ct)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(seg), labels)
    assert sorted(p.name for p in folder.iterdir()) == sorted([path.name, out.name])  # no temp files left


@FUZZ
@given(
    image=images(),
    suffix=st.sampled_from(SUFFIXES),
    cut=st.floats(0.0, 0.95),
    flip_at=st.floats(0.0, 1.0),
    flip=st.booleans(),
)
def test_damaged_files_raise_image_read_error_only(tmp_path_factory, image, suffix, cut, flip_at, flip):
    """Truncated or byte-flipped files: either still a valid 3D image, or ImageReadError."""
    folder = Path(tmp_path_factory.mktemp("damaged"))
    path = folder / f"ct{suffix}"
    sitk.WriteImage(image, str(path))
    data = bytearray(path.read_bytes())
    if flip:
        i = int(flip_at * (len(data) - 1))
        data[i] ^= 0xFF
    else:
        data = data[: int(cut * len(data))]
    path.write_bytes(bytes(data))
    try:
        ct = read_image(path)
    except ImageReadError as exc:
        assert path.name in str(exc) and "cannot be read" in str(exc)
    except HansegError as exc:  # e.g. a header flip that turns it into 2D/4D: still a named error
        assert path.name in str(exc)
    else:
        assert ct.GetDimension() == 3
