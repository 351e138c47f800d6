"""Time budget: window counts as MONAI places them, the richest setting that fits, and exact
left-right mirroring (with the L/R channel swap) at test time."""

import logging

import numpy as np
import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from hanseg.budget import RunSettings, choose, ladder, n_windows
from hanseg.inference import Segmenter
from hanseg.labels import LABEL_IDS


@pytest.mark.parametrize("shape", [(142, 148, 172), (48, 96, 96), (10, 20, 30), (200, 97, 301)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.7])
def test_window_count_matches_monai(shape, overlap):
    patch = (48, 96, 96)
    padded = tuple(max(s, p) for s, p in zip(shape, patch))  # MONAI pads up to the patch first
    interval = _get_scan_interval(padded, patch, 3, [overlap] * 3)
    assert n_windows(shape, patch, overlap) == len(dense_patch_slices(padded, patch, interval))


def test_richest_setting_that_fits_is_chosen():
    shape, patch = (142, 148, 172), (48, 96, 96)          # 45 windows at overlap 0.5
    assert [s.passes for s in ladder(2, 0.5)] == [4, 2, 2, 1, 1, 1]
    assert choose(shape, patch, 2, 0.5, 1.0, None)[0] == RunSettings(2, (2,), 0.5)
    assert choose(shape, patch, 2, 0.5, 1.0, 200.0) == (RunSettings(2, (2,), 0.5), 180.0)
    assert choose(shape, patch, 2, 0.5, 1.0, 100.0) == (RunSettings(2, (), 0.5), 90.0)
    assert choose(shape, patch, 2, 0.5, 1.0, 50.0) == (RunSettings(1, (), 0.5), 45.0)
    assert choose(shape, patch, 2, 0.5, 1.0, 100.0, mirroring=False)[0] == RunSettings(2, (), 0.5)
    lean = RunSettings(1, (), 0.0)
    assert choose(shape, patch, 2, 0.5, 1.0, 10.0)[0] == lean    # 8 windows at overlap 0: 8 s fits 10
    assert choose(shape, patch, 2, 0.5, 1.0, 1.0)[0] == lean     # nothing fits: the leanest, warned


def test_left_right_mirroring_is_exactly_equivariant(tiny_model, caplog):
    """With one window (image = patch), TTA over the x mirror gives P(flip I) = swapLR(flip P(I))."""
    seg = Segmenter(tiny_model, device="cpu")
    image = np.random.default_rng(0).normal(size=(2, *seg.plans.patch_size_zyx)).astype(np.float32)
    settings = RunSettings(1, (2,), 0.5)
    p = seg.probabilities(image, settings)
    p_flipped = seg.probabilities(image[:, :, :, ::-1].copy(), settings)
    left, right = LABEL_IDS["Parotid_L"], LABEL_IDS["Parotid_R"]
    np.testing.assert_allclose(p_flipped[left], p[right][:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(p_flipped[LABEL_IDS["Brainstem"]], p[LABEL_IDS["Brainstem"]][:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)
    plain = seg.probabilities(image, RunSettings(1, (), 0.5))
    assert not np.allclose(plain, p, atol=1e-3)  # the mirror pass really changed something
    assert seg.seconds_per_window > 0


def test_budget_choice_is_logged(tiny_model, caplog):
    import SimpleITK as sitk
    arr = np.full((20, 40, 40), -1000, np.int16)
    arr[4:16, 8:32, 8:32] = 40
    ct = sitk.GetImageFromArray(arr)
    with caplog.at_level(logging.INFO):
        Segmenter(tiny_model, device="cpu", time_budget_s=1e6).predict(ct, None)
    assert "inference: 1 fold(s), mirroring x, overlap 0.25" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        Segmenter(tiny_model, device="cpu", mirroring=False).predict(ct, None)
    assert "mirroring none" in caplog.text
