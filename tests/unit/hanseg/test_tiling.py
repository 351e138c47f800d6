"""The inference grid and its sliding windows match a whole-field-of-view MONAI pass exactly.

Our pipeline must agree with a MONAI bundle-style one (``Spacingd`` + a sliding
window over the whole field of view). We crop to the body, so agreement needs (1) our grid on
the same voxel lattice as ``Spacingd``'s and (2) the same windows over the body. Both are
checked here against MONAI itself, on tiny synthetic images with an untrained tiny network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import SlidingWindowInferer

from benchmarks.monai_baseline import metatensor, preprocessing
from hanseg.geometry import (
    body_box,
    canonical_grid,
    lattice_size,
    window_grid,
    window_starts,
)
from hanseg.inference import Segmenter
from hanseg.model_dir import load_model_dir
from hanseg.preprocess import preprocess_case
from helpers import write_tiny_model


@pytest.mark.parametrize(
    "n,roi,overlap",
    [(100, 32, 0.5), (97, 32, 0.25), (33, 32, 0.5), (32, 32, 0.5), (20, 32, 0.5), (150, 48, 0.0), (7, 4, 0.9)],
)
def test_window_starts_are_monais(n, roi, overlap):
    step = max(int(roi * (1 - overlap)), 1) if n != roi else roi
    monai = sorted({s[0].start for s in dense_patch_slices((n,), (roi,), (step,))})
    assert window_starts(n, roi, overlap) == monai
    assert window_starts(100, 32, 0.5) == [0, 16, 32, 48, 64, 68]  # worked by hand


def synthetic_ct(direction: tuple[float, ...]) -> sitk.Image:
    """80×70×48 voxels at 1×1×1.5 mm: air with an off-centre water ellipsoid (the body)."""
    z, y, x = np.mgrid[:48, :70, :80].astype(float)
    body = ((x - 30) / 18) ** 2 + ((y - 40) / 14) ** 2 + ((z - 20) / 10) ** 2 <= 1
    rng = np.random.default_rng(0)
    hu = np.where(body, 40 + 30 * np.sin(x / 3) * np.cos(y / 4), -1000) + rng.normal(0, 5, body.shape)
    ct = sitk.GetImageFromArray(hu.astype(np.int16))
    ct.SetSpacing((1.0, 1.0, 1.5))
    ct.SetOrigin((-40.0, 25.0, -30.0))
    ct.SetDirection(direction)
    return ct


FLIP_X = (-1.0, 0, 0, 0, 1, 0, 0, 0, 1)
IDENTITY = (1.0, 0, 0, 0, 1, 0, 0, 0, 1)


@pytest.mark.parametrize("direction", [IDENTITY, FLIP_X], ids=["identity", "flipped-x"])
def test_grids_lie_on_the_spacingd_lattice(tmp_path: Path, direction):
    ct = synthetic_ct(direction)
    spacing = (2.0, 2.5, 3.0)
    model = write_tiny_model(tmp_path / "model", channels=("CT",), spacing=spacing, patch=(16, 16, 16))
    plans = load_model_dir(model).plans
    monai = preprocessing(plans, load=False)({"image": metatensor(ct)})["image"]  # (C, Z, Y, X) after Transposed
    origin_lps = monai.affine.numpy()[:3, 3] * np.array([-1, -1, 1])  # MONAI's affine is RAS
    assert tuple(monai.shape[1:][::-1]) == tuple(lattice_size(ct, spacing))
    box = body_box(ct, -500.0, 4.0)
    for grid in (canonical_grid(ct, box, spacing), window_grid(ct, box, spacing, (16, 16, 16), 0.5)):
        steps = (np.array(grid.origin_xyz) - origin_lps) / np.array(spacing)
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)
        assert (np.round(steps) >= 0).all()
        assert (np.round(steps) + grid.size_xyz <= lattice_size(ct, spacing)).all()


@pytest.mark.parametrize("direction", [IDENTITY, FLIP_X], ids=["identity", "flipped-x"])
def test_softmax_on_the_body_equals_a_whole_field_of_view_pass(tmp_path: Path, direction):
    ct = synthetic_ct(direction)
    model = write_tiny_model(tmp_path / "model", channels=("CT",), spacing=(2.0, 2.0, 2.0), patch=(16, 16, 16))
    seg = Segmenter(model, "cpu", time_budget_s=None, mirroring=False, precision="fp32")  # MONAI runs fp32
    plans = seg.plans
    monai_in = preprocessing(plans, load=False)({"image": metatensor(ct)})["image"]
    origin_lps = monai_in.affine.numpy()[:3, 3] * np.array([-1, -1, 1])
    inferer = SlidingWindowInferer(
        roi_size=plans.patch_size_zyx, sw_batch_size=1, overlap=plans.overlap, mode="gaussian"
    )
    with torch.inference_mode():
        reference = torch.softmax(inferer(monai_in[None].as_tensor(), seg.networks[0])[0], 0).numpy()

    def on_box(windows: bool) -> tuple[np.ndarray, np.ndarray]:
        """Our softmax and the reference's on the lattice voxels of the body box."""
        case = preprocess_case(ct, None, plans, windows=windows)
        ours = seg.probabilities(case.image)
        tight = canonical_grid(ct, case.box, plans.spacing_xyz_mm)
        at = np.round((np.array(tight.origin_xyz) - origin_lps) / 2.0).astype(int)[::-1]  # z,y,x
        mine = np.round((np.array(tight.origin_xyz) - np.array(case.grid.origin_xyz)) / 2.0).astype(int)[::-1]
        region = tuple(slice(a, a + n) for a, n in zip(at, tight.shape))
        local = tuple(slice(a, a + n) for a, n in zip(mine, tight.shape))
        return ours[(slice(None), *local)], reference[(slice(None), *region)]

    ours, ref = on_box(windows=True)
    assert ours.shape[1:] == on_box(windows=False)[0].shape[1:]
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    cropped, ref = on_box(windows=False)  # tiling only the crop: other windows, other blend
    assert np.abs(cropped - ref).max() > 1e-3
