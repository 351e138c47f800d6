"""Voxel-edge contours: exact shapes, holes, the diagonal rule, and an even-odd round trip."""

from __future__ import annotations

import numpy as np
import pytest

from hanseg.dicom.contours import (
    Loop,
    fill_loops,
    mask_contours,
    signed_area,
    slice_contours,
)


def even_odd(loops: list[Loop], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise loops at pixel centres with the even-odd rule (a ray towards +x)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    inside = np.zeros(shape, bool)
    for loop in loops:
        x0, y0 = loop.points[:, 0], loop.points[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        for a, b, c, d in zip(x0, y0, x1, y1):
            if b == d:
                continue
            spans = (b > rows) != (d > rows)
            x_cross = a + (rows - b) * (c - a) / (d - b)
            inside ^= spans & (cols < x_cross)
    return inside


def corners(loop: Loop) -> set[tuple[float, float]]:
    return {(float(x), float(y)) for x, y in loop.points}


def test_single_voxel_is_a_square_on_its_edges():
    [loop] = slice_contours(np.ones((1, 1), np.uint8))
    assert corners(loop) == {(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)}
    assert len(loop.points) == 4 and not loop.is_hole and loop.area == 1.0


def test_single_voxel_inside_a_slice_keeps_its_position():
    mask = np.zeros((6, 7), bool)
    mask[4, 2] = True  # row 4, column 2: x = 2, y = 4
    [loop] = slice_contours(mask)
    assert corners(loop) == {(1.5, 3.5), (2.5, 3.5), (2.5, 4.5), (1.5, 4.5)}


def test_rectangle_two_rows_three_columns():
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:5] = True
    [loop] = slice_contours(mask)
    assert len(loop.points) == 4  # collinear vertices removed
    assert corners(loop) == {(1.5, 0.5), (4.5, 0.5), (4.5, 2.5), (1.5, 2.5)}
    assert loop.area == 6.0


def test_ring_gives_an_outer_loop_and_a_hole():
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    mask[2:5, 2:5] = False
    outer, hole = slice_contours(mask)
    assert not outer.is_hole and hole.is_hole
    assert outer.area == 25.0 and hole.area == -9.0
    assert outer.area + hole.area == mask.sum()
    assert corners(hole) == {(1.5, 1.5), (4.5, 1.5), (4.5, 4.5), (1.5, 4.5)}


def test_two_separate_pieces():
    mask = np.zeros((4, 8), bool)
    mask[1, 1:3] = True
    mask[0:3, 5] = True
    loops = slice_contours(mask)
    assert [lp.is_hole for lp in loops] == [False, False]
    assert sorted(lp.area for lp in loops) == [2.0, 3.0]
    assert corners(loops[0]) == {(4.5, -0.5), (5.5, -0.5), (5.5, 2.5), (4.5, 2.5)}  # top first


@pytest.mark.parametrize("mask", [[[1, 0], [0, 1]], [[0, 1], [1, 0]]])
def test_pixels_touching_diagonally_are_two_loops_sharing_a_corner(mask):
    loops = slice_contours(np.array(mask, bool))
    assert len(loops) == 2 and not any(lp.is_hole for lp in loops)
    assert all(len(lp.points) == 4 for lp in loops)
    assert corners(loops[0]) & corners(loops[1]) == {(0.5, 0.5)}


def test_hole_touching_the_outside_at_a_corner_stays_a_hole():
    mask = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 1]], bool)
    outer, hole = slice_contours(mask)
    assert not outer.is_hole and hole.is_hole
    assert outer.area == 8.0 and hole.area == -1.0
    assert corners(outer) & corners(hole) == {(0.5, 0.5)}
    assert np.array_equal(even_odd([outer, hole], mask.shape), mask)


def test_l_shape():
    mask = np.array([[1, 0], [1, 0], [1, 1]], bool)
    [loop] = slice_contours(mask)
    assert [tuple(p) for p in loop.points] == [
        (-0.5, -0.5),
        (0.5, -0.5),
        (0.5, 1.5),
        (1.5, 1.5),
        (1.5, 2.5),
        (-0.5, 2.5),
    ]
    assert loop.area == 4.0


def test_empty_mask_has_no_loops_and_3d_is_refused():
    assert slice_contours(np.zeros((3, 3), bool)) == []
    with pytest.raises(ValueError, match="2D"):
        slice_contours(np.zeros((2, 3, 3), bool))


def assert_well_formed(loops: list[Loop], mask: np.ndarray) -> None:
    assert np.array_equal(even_odd(loops, mask.shape), mask)
    assert sum(lp.area for lp in loops) == mask.sum()
    for loop in loops:
        pts = loop.points
        assert len(pts) >= 4
        assert len({tuple(p) for p in pts}) == len(pts), "a vertex repeats: loop not simple"
        assert np.all(np.abs(pts - np.floor(pts) - 0.5) == 0), "vertex not on a voxel edge"
        step = np.diff(pts, axis=0, append=pts[:1])
        step_next = np.roll(step, -1, axis=0)
        cross = step[:, 0] * step_next[:, 1] - step[:, 1] * step_next[:, 0]
        assert np.all(cross != 0), "collinear vertex kept"
        assert (signed_area(pts) < 0) == loop.is_hole
    holes = [lp.is_hole for lp in loops]
    assert holes == sorted(holes), "outer loops come before holes"


@pytest.mark.parametrize("seed", range(12))
def test_random_masks_rasterise_back_exactly(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 24, size=2))
    mask = rng.random(shape) < rng.uniform(0.2, 0.8)
    assert_well_formed(slice_contours(mask), mask)
    assert np.array_equal(fill_loops(slice_contours(mask), mask.shape), mask)


def test_fill_loops_clips_to_the_slice():
    square = Loop(np.array([[-2.5, -1.5], [1.5, -1.5], [1.5, 0.5], [-2.5, 0.5]]), False)
    assert np.array_equal(fill_loops([square], (2, 3)), [[True, True, False], [False, False, False]])


def test_mask_contours_lists_only_slices_with_foreground():
    mask = np.zeros((4, 5, 5), bool)
    mask[1, 1:3, 1:3] = True
    mask[3, 0, 0] = True
    result = mask_contours(mask)
    assert sorted(result) == [1, 3]
    assert [lp.area for lp in result[1]] == [4.0] and [lp.area for lp in result[3]] == [1.0]
    with pytest.raises(ValueError, match="3D"):
        mask_contours(mask[0])
