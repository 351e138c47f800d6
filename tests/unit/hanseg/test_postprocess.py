"""The way back to the CT grid, slab by slab, equals one pass over the whole box."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from hanseg.geometry import Box, Grid
from hanseg.postprocess import grid_part, probabilities_to_ct, slabs


def oblique_ct() -> sitk.Image:
    ct = sitk.Image([40, 36, 30], sitk.sitkInt16)
    ct.SetSpacing((0.7, 0.8, 1.3))
    ct.SetOrigin((-3.0, 2.0, 5.0))
    a = math.radians(12)
    ct.SetDirection((math.cos(a), -math.sin(a), 0, math.sin(a), math.cos(a), 0, 0, 0, -1))
    return ct


def softmax(seed: int, grid: Grid, classes: int = 5) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(classes, *grid.shape)).astype(np.float32) * 3
    probs = np.exp(logits)
    return probs / probs.sum(0, keepdims=True)


GRID = Grid((-20.0, -10.0, -40.0), (2.0, 2.0, 2.5), (24, 24, 22))
BOX = Box((2, 3, 4), (27, 33, 38))


@pytest.mark.parametrize("slab_voxels", [1, 500, 2000, 7000])
@pytest.mark.parametrize("max_components", [(), (1, 2) + (1,) * 28])
def test_slabs_give_the_labels_of_one_pass(slab_voxels, max_components):
    probs, ct = softmax(0, GRID), oblique_ct()
    whole = probabilities_to_ct(probs, GRID, ct, BOX, max_components, slab_voxels=10**9)
    assert len(np.unique(whole)) == 5  # every class wins somewhere
    assert (whole[: BOX.lo[0]] == 0).all() and (whole[BOX.hi[0] :] == 0).all()
    np.testing.assert_array_equal(probabilities_to_ct(probs, GRID, ct, BOX, max_components, slab_voxels), whole)


def test_slabs_cover_the_box_in_whole_slices():
    pieces = slabs(Box((2, 3, 4), (9, 5, 6)), 9)  # 4 voxels a slice: 2 slices a slab
    assert [(p.lo[0], p.hi[0]) for p in pieces] == [(2, 4), (4, 6), (6, 8), (8, 9)]
    assert all(p.lo[1:] == (3, 4) and p.hi[1:] == (5, 6) for p in pieces)


def test_a_slab_reads_only_the_grid_around_it_and_none_outside():
    ct = sitk.Image([10, 10, 4], sitk.sitkInt16)
    ct.SetOrigin((0.0, 0.0, 10.0))  # z 10..13 mm: grid voxels 4..6.5 read
    grid = Grid((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), (12, 12, 12))
    found = grid_part(np.zeros((2, *grid.shape)), grid, ct)
    assert found is not None
    part, part_grid = found
    assert part.shape == (2, 6, 12, 12) and part_grid.origin_xyz[2] == 6.0  # z voxels 3..8, margin included
    far = sitk.Image([4, 4, 4], sitk.sitkInt16)
    far.SetOrigin((0.0, 0.0, 500.0))
    assert grid_part(np.zeros((2, *grid.shape)), grid, far) is None
