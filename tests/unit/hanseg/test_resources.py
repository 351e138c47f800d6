"""The memory pre-check: a CT far larger than usual is refused from its header, before any
voxel is read, with the numbers a user needs; a usual one passes."""

import json
from pathlib import Path

import pytest

from hanseg.errors import InputTooLargeError
from hanseg.layouts import run
from hanseg.resources import GIB, check_fits, header_voxels, memory_limit_bytes
from helpers import FakePredictor
from helpers import write_ct as write


def header_only_mha(path: Path, size_xyz: tuple[int, int, int]) -> Path:
    """An .mha header whose voxel file does not exist: only a header-only reader can pass."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\nElementSpacing = 0.5 0.5 0.5\n"
        f"DimSize = {' '.join(map(str, size_xyz))}\nElementType = MET_SHORT\n"
        f"ElementDataFile = {path.stem}.raw\n"
    )
    return path


def test_header_is_read_without_the_voxels(tmp_path):
    assert header_voxels(header_only_mha(tmp_path / "ct.mha", (1024, 1024, 200))) == 1024 * 1024 * 200


def test_every_real_size_fits_in_4_gb_and_a_far_larger_ct_does_not(tmp_path):
    """HaN-Seg CTs run up to about 1024×1024×350 (int16): never refused under the usual 4 GB."""
    for slices in (60, 200, 330, 350):
        check_fits(
            header_only_mha(tmp_path / f"ct{slices}.mha", (1024, 1024, slices)), limit=4 * GIB, in_use=int(0.6 * GIB)
        )
    huge = header_only_mha(tmp_path / "huge.mha", (1024, 1024, 600))
    with pytest.raises(
        InputTooLargeError,
        match=r"huge.mha: a CT of 629 M voxels needs about 3.8 GiB, "
        r"but only 3.4 GiB of the 4.0 GiB",
    ):
        check_fits(huge, limit=4 * GIB, in_use=int(0.6 * GIB))


def test_the_need_is_the_network_part_and_a_few_bytes_per_ct_voxel():
    import SimpleITK as sitk

    from hanseg.resources import BYTES_PER_LABEL_VOXEL, NETWORK_GIB, bytes_needed

    voxels = 10**8
    assert bytes_needed(voxels, sitk.sitkInt16) == int(NETWORK_GIB * GIB) + voxels * (2 + BYTES_PER_LABEL_VOXEL)
    # raw scanner values (unsigned) are shifted into a signed copy: 2 bytes more per voxel
    assert bytes_needed(voxels, sitk.sitkUInt16) - bytes_needed(voxels, sitk.sitkInt16) == 2 * voxels
    assert bytes_needed(voxels, sitk.sitkFloat32) - bytes_needed(voxels, sitk.sitkInt16) == 2 * voxels


def test_memory_limit_is_found_on_linux():
    limit = memory_limit_bytes()
    assert limit is not None and 0.5 * GIB < limit < 2**50


def test_too_large_case_fails_alone_before_prediction(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    write(inp / "images/ct/a_CT.mha")
    header_only_mha(inp / "images/ct/b_CT.mha", (8192, 8192, 4000))  # ~3 TB needed: never fits
    predictor = FakePredictor()
    assert run(inp, out, predictor) == 1
    assert predictor.calls == [((8, 9, 10), None)]  # a_CT only
    results = json.loads((out / "results.json").read_text())
    assert results[0]["outputs"] and not results[1]["outputs"]
    assert "b_CT.mha: a CT of 268435 M voxels needs about" in results[1]["error_messages"][0]


def test_ct_smaller_than_the_patch_is_padded_and_cropped_back(tiny_model):
    """A CT whose resampled grid (5×5×3 at the tiny model's 4 mm) is far below the 16×32×32
    patch: the sliding window pads, and the label map comes back on the CT's own grid."""
    import numpy as np
    import SimpleITK as sitk

    from hanseg.inference import Segmenter

    arr = np.full((6, 20, 20), -1000, np.int16)
    arr[1:5, 4:16, 4:16] = 40
    ct = sitk.GetImageFromArray(arr)
    ct.SetSpacing((1.0, 1.0, 2.0))
    prediction = Segmenter(tiny_model, device="cpu").predict(ct, None)
    assert prediction.labels.shape == arr.shape and prediction.labels.dtype == np.uint8
    assert prediction.labels.max() <= 30
