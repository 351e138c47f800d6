"""Two facts a physicist would check first, on tiny images, so that a broken product fails in
the unit tier: the registered MR reaches the network's input (not the zeros of the CT-only
fallback), and an OAR the network finds on the patient's left comes back on the left of the CT,
whichever way the CT's x axis is stored (LPS: +x is the patient's left)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import hanseg.preprocess as preprocess
from hanseg.geometry import Box, Grid, resample_to_grid
from hanseg.labels import LABEL_IDS, NUM_CLASSES
from hanseg.postprocess import probabilities_to_ct
from hanseg.registration import RegistrationResult
from helpers import tiny_plans

SIZE_XYZ = (40, 36, 30)
SPACING = (2.0, 2.0, 2.0)


def image(array_zyx: np.ndarray, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(SPACING)
    img.SetDirection(direction)
    img.SetOrigin(origin)
    return img


def head() -> tuple[sitk.Image, sitk.Image]:
    """A CT with a soft-tissue block in air, and an MR on the same grid whose signal rises along x."""
    body = np.zeros(SIZE_XYZ[::-1], bool)
    body[4:-4, 6:-6, 5:-5] = True
    ct = np.where(body, 40, -1000).astype(np.int16)
    mr = np.where(body, 100.0 + 20.0 * np.arange(SIZE_XYZ[0])[None, None, :], 0.0).astype(np.float32)
    return image(ct), image(mr)


def registered(transform: sitk.Euler3DTransform | None = None) -> RegistrationResult:
    return RegistrationResult(
        sitk.Euler3DTransform() if transform is None else transform,
        True,
        "MR registered to CT (test)",
        1.0,
        0.0,
        (0.0, 0.0, 0.0),
    )


def test_the_registered_mr_is_the_networks_second_channel(monkeypatch):
    ct, mr = head()
    monkeypatch.setattr(preprocess, "register_mr_to_ct", lambda *args, **kwargs: registered())
    case = preprocess.preprocess_case(ct, mr, tiny_plans(patch=(8, 8, 8)))
    assert case.image.shape[0] == 2 and case.registration is not None and case.registration.ok
    channel = case.image[1]
    signal = resample_to_grid(mr, case.grid, default=0.0)
    inside = signal > 0
    assert inside.mean() > 0.2
    assert np.corrcoef(channel[inside], signal[inside])[0, 1] > 0.99  # the MR, rising along x
    assert abs(float(channel[inside].mean())) < 0.5 < float(channel[inside].std())  # z-scored
    assert not channel[~inside].any()
    assert not [w for w in case.warnings if "MR not used" in w]


def test_a_refused_registration_leaves_zeros_and_says_so(monkeypatch):
    ct, mr = head()
    refused = RegistrationResult(sitk.Euler3DTransform(), False, "outline overlap too low", 0.1, 0.0, (0.0, 0.0, 0.0))
    monkeypatch.setattr(preprocess, "register_mr_to_ct", lambda *args, **kwargs: refused)
    case = preprocess.preprocess_case(ct, mr, tiny_plans(patch=(8, 8, 8)))
    assert not case.image[1].any() and case.image[0].any()
    assert any("MR not used" in w and "overlap" in w for w in case.warnings)


@pytest.mark.parametrize("flip_x", [False, True])
def test_an_oar_on_the_patients_left_comes_back_on_the_left(flip_x):
    """Probabilities on the canonical grid: Parotid_L at larger x (the patient's left),
    Parotid_R at smaller x; the label map on the CT must hold each on its own physical side."""
    grid = Grid((0.0, 0.0, 0.0), SPACING, SIZE_XYZ)
    probs = np.full((NUM_CLASSES, *grid.shape), 0.01, np.float32)
    probs[0] = 0.5
    half = SIZE_XYZ[0] // 2
    probs[LABEL_IDS["Parotid_L"], 10:20, 10:26, half + 4 : half + 14] = 0.9
    probs[LABEL_IDS["Parotid_R"], 10:20, 10:26, half - 14 : half - 4] = 0.9
    probs /= probs.sum(0, keepdims=True)
    array = np.zeros(SIZE_XYZ[::-1], np.int16)
    if flip_x:  # the same physical box, stored with x running right to left
        ct = image(array, (-1, 0, 0, 0, 1, 0, 0, 0, 1), ((SIZE_XYZ[0] - 1) * SPACING[0], 0.0, 0.0))
    else:
        ct = image(array)
    labels = probabilities_to_ct(probs, grid, ct, Box((0, 0, 0), SIZE_XYZ[::-1]))
    for name, sign in (("Parotid_L", 1), ("Parotid_R", -1)):
        zyx = np.argwhere(labels == LABEL_IDS[name])
        assert len(zyx) == 10 * 16 * 10, name
        x_mm = np.array([ct.TransformIndexToPhysicalPoint([int(i) for i in p[::-1]])[0] for p in zyx])
        assert np.all(sign * (x_mm - (SIZE_XYZ[0] - 1) * SPACING[0] / 2) > 0), name
    assert set(np.unique(labels)) == {0, LABEL_IDS["Parotid_L"], LABEL_IDS["Parotid_R"]}
