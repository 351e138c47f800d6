import numpy as np
import torch

from hanseg.labels import LABEL_IDS
from training.data import CachedCase, augment, sample_patch

L, R = LABEL_IDS["Parotid_L"], LABEL_IDS["Parotid_R"]


def test_mirroring_swaps_left_and_right_labels():
    """With rotation/scaling switched off, every flipped sample is the exact x-mirror of its
    input with Parotid_L and Parotid_R exchanged; unflipped ones are untouched."""
    labels = torch.zeros(16, 8, 8, 8, dtype=torch.uint8)
    labels[:, 2:6, 2:6, 5:8] = L  # left parotid at +x (high x index on the LPS grid)
    labels[:, 2:6, 2:6, 0:2] = LABEL_IDS["Brainstem"]
    image = torch.zeros(16, 2, 8, 8, 8)
    present = torch.zeros(16, 31, dtype=torch.bool)
    present[:, [0, L, LABEL_IDS["Brainstem"]]] = True
    gen = torch.Generator().manual_seed(0)
    import training.data as data

    original = data._random_affine
    data._random_affine = lambda image, labels, gen, **kw: (image, labels)
    try:
        _, out, pres = augment(image.clone(), labels.clone(), present.clone(), gen)
    finally:
        data._random_affine = original
    flipped = [i for i in range(16) if (out[i] == R).any()]
    assert 0 < len(flipped) < 16
    for i in range(16):
        if i in flipped:
            expected = labels[i].flip(-1).clone()
            expected[expected == L] = R
            assert torch.equal(out[i], expected)
            assert pres[i, R] and not pres[i, L]
        else:
            assert torch.equal(out[i], labels[i]) and pres[i, L]


def test_patches_are_centred_on_small_organs_as_often_as_on_large_ones():
    labels = np.zeros((40, 80, 80), np.uint8)
    labels[5:35, 10:70, 10:70] = 4  # a big organ
    labels[20, 40, 40] = 8  # a one-voxel cochlea
    coords = {c: np.argwhere(labels == c) for c in (0, 4, 8)}
    case = CachedCase("c", np.zeros((2, 40, 80, 80), np.float16), labels, np.ones(31, bool), coords)
    rng = np.random.default_rng(0)
    hits = sum((sample_patch(case, (16, 16, 16), rng, fg_fraction=1.0)[1] == 8).any() for _ in range(200))
    assert 70 < hits < 130  # about half the patches contain it (2 classes, uniform)


def test_elastic_deformation_is_smooth_bounded_and_keeps_labels_valid():
    gen = torch.Generator().manual_seed(0)
    field = data_module().elastic_field(2, (16, 32, 32), gen, max_voxels=4.0)
    assert field.shape == (2, 16, 32, 32, 3)
    in_voxels = field * torch.tensor([32 / 2, 32 / 2, 16 / 2])
    assert in_voxels.abs().max() <= 4.0 + 1e-5 and in_voxels.abs().max() > 1.0
    assert (in_voxels[:, :, :, 1:] - in_voxels[:, :, :, :-1]).abs().max() < 1.0  # < 1 voxel between neighbours
    labels = torch.zeros(4, 16, 32, 32, dtype=torch.uint8)
    labels[:, 4:12, 8:24, 8:24] = LABEL_IDS["Brainstem"]
    image = labels[:, None].float().repeat(1, 2, 1, 1, 1)
    present = torch.ones(4, 31, dtype=torch.bool)
    _, out_lab, _ = augment(image.clone(), labels.clone(), present, torch.Generator().manual_seed(1), elastic=1.0)
    assert set(out_lab.unique().tolist()) <= {0, LABEL_IDS["Brainstem"]}
    assert not torch.equal(out_lab, labels)
    # without elastic the augmentation draws exactly what it drew before (old runs reproduce)
    a = augment(image.clone(), labels.clone(), present.clone(), torch.Generator().manual_seed(2))
    b = augment(image.clone(), labels.clone(), present.clone(), torch.Generator().manual_seed(2), elastic=0.0)
    assert torch.equal(a[1], b[1])


def data_module():
    import training.data as data

    return data
