import numpy as np
import pytest
import SimpleITK as sitk

from hanseg.geometry import (
    Box,
    Grid,
    body_box,
    canonical_grid,
    crop,
    depth_below_top_mm,
    pad_to_cover,
    resample_from_grid,
    resample_to_grid,
    subgrid,
    uncrop,
)
from hanseg.postprocess import probabilities_to_ct


def image(arr: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing), img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def test_crop_uncrop_are_exact_inverses():
    arr = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    box = Box((1, 2, 0), (3, 5, 4))
    part = crop(arr, box)
    assert part.shape == box.shape == (2, 3, 4)
    np.testing.assert_array_equal(part, arr[1:3, 2:5, 0:4])
    back = uncrop(part, box, arr.shape, fill=-1)
    np.testing.assert_array_equal(back[box.slices], part)
    assert (back == -1).sum() == arr.size - part.size


def test_body_box_finds_the_body_not_the_couch():
    ct = np.full((20, 60, 60), -1000, np.int16)
    ct[5:15, 10:40, 20:45] = 40  # body
    ct[:, 50:53, 5:55] = 100  # couch, 7 voxels below the body (separated by air)
    box = body_box(image(ct, spacing=(2.0, 2.0, 2.0)), threshold_hu=-500, margin_mm=0, work_mm=2)
    assert box == Box((5, 10, 20), (15, 40, 45))
    box_m = body_box(image(ct, spacing=(2.0, 2.0, 2.0)), threshold_hu=-500, margin_mm=4, work_mm=2)
    assert box_m == Box((3, 8, 18), (17, 42, 47))


def test_body_box_of_empty_ct_is_the_whole_image():
    ct = np.full((4, 5, 6), -1000, np.int16)
    assert body_box(image(ct), -500, 10) == Box((0, 0, 0), (4, 5, 6))


def test_canonical_grid_on_identity_ct_reproduces_the_box_exactly():
    ct = image(np.zeros((10, 12, 14), np.int16), spacing=(0.5, 0.8, 2.0), origin=(-3, 4, 7))
    box = Box((2, 3, 4), (8, 9, 10))
    grid = canonical_grid(ct, box, ct.GetSpacing())
    assert grid.shape == box.shape
    assert grid.origin_xyz == pytest.approx(ct.TransformIndexToPhysicalPoint((4, 3, 2)))


@pytest.mark.parametrize("flip_axis", [0, 1, 2])
def test_flipped_ct_is_seen_in_canonical_orientation(flip_axis):
    """A CT stored with a flipped axis shows the network the same array as the unflipped one."""
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, (6, 7, 8)).astype(np.float32)
    ref = image(arr, spacing=(1.0, 1.5, 2.0))
    direction = np.eye(3)
    axis_xyz = 2 - flip_axis
    direction[axis_xyz, axis_xyz] = -1
    origin = np.zeros(3)
    origin[axis_xyz] = (arr.shape[flip_axis] - 1) * ref.GetSpacing()[axis_xyz]
    flipped = image(np.flip(arr, flip_axis).copy(), ref.GetSpacing(), tuple(origin), tuple(direction.ravel()))
    box = Box.full(arr.shape)
    out_ref = resample_to_grid(ref, canonical_grid(ref, box, ref.GetSpacing()))
    out_flip = resample_to_grid(flipped, canonical_grid(flipped, box, flipped.GetSpacing()))
    np.testing.assert_allclose(out_flip, out_ref, atol=1e-4)
    np.testing.assert_allclose(out_ref, arr, atol=1e-4)


@pytest.mark.parametrize("direction", [None, (-1, 0, 0, 0, 1, 0, 0, 0, -1), (0, 1, 0, 1, 0, 0, 0, 0, 1)])
def test_labels_round_trip_through_the_canonical_grid(direction):
    """resample_to_grid then resample_from_grid (nearest) returns the labels unchanged when
    the canonical spacing equals the CT's."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 31, (5, 6, 7)).astype(np.uint8)
    ct = image(labels, spacing=(1.2, 0.9, 2.5), origin=(5, -7, 11), direction=direction)
    box = Box((1, 1, 2), (5, 6, 6))
    grid = canonical_grid(
        ct,
        box,
        ct.GetSpacing()
        if direction is None
        else tuple(np.abs(np.array(direction).reshape(3, 3)) @ np.array(ct.GetSpacing())),
    )
    on_grid = resample_to_grid(ct, grid, interpolator=sitk.sitkNearestNeighbor)
    back = resample_from_grid(on_grid.astype(np.uint8), grid, subgrid(ct, box), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(back, crop(labels, box))


def test_resample_round_trip_of_a_smooth_image_is_close():
    z, y, x = np.mgrid[:20, :40, :40].astype(np.float32)
    arr = np.sin(x / 6) + np.cos(y / 7) + z / 10
    ct = image(arr, spacing=(0.6, 0.6, 2.0))
    box = Box.full(arr.shape)
    grid = canonical_grid(ct, box, (1.0, 1.0, 2.0))
    back = resample_from_grid(resample_to_grid(ct, grid), grid, subgrid(ct, box))
    assert np.abs(back - arr)[2:-2, 3:-3, 3:-3].max() < 0.05


def test_probabilities_to_ct_is_argmax_on_the_ct_grid():
    labels = np.zeros((6, 8, 10), np.uint8)
    labels[1:4, 2:6, 3:8] = 5
    labels[2:3, 3:5, 4:6] = 30
    ct = image(
        labels.astype(np.int16), spacing=(0.7, 0.7, 2.0), origin=(1, 2, 3), direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1)
    )
    box = Box((1, 1, 1), (5, 7, 9))
    grid = canonical_grid(ct, box, ct.GetSpacing())
    on_grid = resample_to_grid(ct, grid, interpolator=sitk.sitkNearestNeighbor).astype(int)
    probs = np.eye(31, dtype=np.float32)[on_grid].transpose(3, 0, 1, 2)
    out = probabilities_to_ct(probs, grid, ct, box)
    assert out.dtype == np.uint8 and out.shape == labels.shape
    np.testing.assert_array_equal(out, labels)


def test_body_box_prefers_a_thick_body_over_a_bigger_thin_couch():
    ct = np.full((40, 80, 80), -1000, np.int16)
    ct[10:30, 20:40, 30:50] = 40  # head: 20x20x20 voxels = 8000
    ct[:, 60:64, 2:78] = 0  # couch: 40x4x76 voxels = 12160, but only 4 thick
    box = body_box(image(ct, spacing=(2.0, 2.0, 2.0)), threshold_hu=-500, margin_mm=0, work_mm=2)
    assert box == Box((10, 20, 30), (30, 40, 50))


def test_regrid_flipped_is_an_exact_flip_and_oblique_keeps_the_centre():
    from phantoms import regrid

    arr = np.random.default_rng(3).integers(-1000, 1000, (5, 6, 7)).astype(np.int16)
    img = image(arr, spacing=(0.5, 0.7, 2.0), origin=(3, -4, 5))
    flipped = regrid(img, "flipped", sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(flipped), arr[::-1, :, ::-1])
    oblique = regrid(img, "oblique")

    def centre(im: sitk.Image) -> tuple[float, ...]:
        return im.TransformContinuousIndexToPhysicalPoint(((np.array(im.GetSize()) - 1) / 2).tolist())

    assert centre(oblique) == pytest.approx(centre(img))
    assert oblique.GetDirection()[1] == pytest.approx(-np.sin(np.radians(15)))


def test_keep_largest_components_removes_islands_but_keeps_allowed_parts():
    from hanseg.postprocess import keep_largest_components

    labels = np.zeros((10, 20, 20), np.uint8)
    labels[2:6, 2:8, 2:8] = 3  # arytenoid, left part (144 voxels)
    labels[2:6, 2:8, 12:18] = 3  # arytenoid, right part (144)
    labels[8, 18, 18] = 3  # stray voxel
    labels[1:9, 10:12, 9:11] = 5  # brainstem (32)
    labels[0, 0, 0] = 5  # stray voxel
    allowed = tuple(2 if i == 3 else 1 for i in range(1, 31))
    before = labels.copy()
    assert keep_largest_components(labels, allowed) == 2
    assert labels[8, 18, 18] == 0 and labels[0, 0, 0] == 0
    before[8, 18, 18] = before[0, 0, 0] = 0
    np.testing.assert_array_equal(labels, before)


def test_labels_on_a_sheared_grid_round_trip_through_the_canonical_grid():
    """A non-orthonormal (gantry-tilt) CT grid: to the canonical grid and back (nearest) keeps
    the labels, and the block lands where the sheared header says it is in mm."""
    t = np.radians(10)
    labels = np.zeros((12, 16, 16), np.uint8)
    labels[3:9, 4:12, 5:11] = 7
    ct = image(
        labels, spacing=(1.0, 1.0, 2.0), origin=(-3, 4, 10), direction=(1, 0, 0, 0, 1, np.sin(t), 0, 0, np.cos(t))
    )
    box = Box.full(labels.shape)
    grid = canonical_grid(ct, box, (0.5, 0.5, 0.5))
    on_grid = resample_to_grid(ct, grid, interpolator=sitk.sitkNearestNeighbor)
    centre_idx = np.argwhere(labels == 7).mean(axis=0)[::-1]  # x, y, z voxels
    want_mm = ct.TransformContinuousIndexToPhysicalPoint(centre_idx.tolist())
    got_idx = np.argwhere(on_grid == 7).mean(axis=0)[::-1]
    got_mm = np.array(grid.origin_xyz) + got_idx * np.array(grid.spacing_xyz)
    np.testing.assert_allclose(got_mm, want_mm, atol=0.3)
    back = resample_from_grid(on_grid.astype(np.uint8), grid, subgrid(ct, box), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(back, labels)


def test_min_pool_keeps_a_thin_gap_that_striding_would_skip():
    from hanseg.geometry import min_pool

    arr = np.arange(2 * 5 * 7, dtype=np.int16).reshape(2, 5, 7)
    pooled = min_pool(arr, (2, 2, 3))
    assert pooled.shape == (1, 3, 3)
    assert pooled[0, 0, 0] == 0 and pooled[0, 2, 2] == arr[0, 4, 6]  # partial blocks count
    np.testing.assert_array_equal(pooled[0], arr[0, ::2, ::3])  # monotone array: block min = corner


def test_body_box_excludes_a_couch_two_millimetres_below_the_body():
    """A 2 mm air gap that a 4 mm strided copy would skip (samples at rows 40 and 44 only)."""
    ct = np.full((40, 80, 100), -1000, np.int16)
    ct[5:35, 10:41, 30:70] = 40  # body: rows 10..40, 31 mm thick
    ct[:, 43:61, 2:98] = 100  # couch: rows 43..60, 18 mm thick, 96 mm wide; gap rows 41-42
    box = body_box(image(ct), threshold_hu=-500, margin_mm=0, work_mm=4)
    assert box.lo[1] <= 10 and 41 <= box.hi[1] <= 44  # ends at the body (within one block), not row 61
    assert box.lo[2] >= 26 and box.hi[2] <= 74  # the couch's width is not in the box


def reference_argmax_on_ct(probs, grid, ct, box):
    """The unoptimised inverse: every class resampled onto the whole CT sub-grid, then argmax."""
    target = subgrid(ct, box)
    stack = np.stack(
        [resample_from_grid(probs[c], grid, target, default=1.0 if c == 0 else 0.0) for c in range(probs.shape[0])]
    )
    return stack.argmax(0).astype(np.uint8)


@pytest.mark.parametrize("direction", [None, (0.966, -0.259, 0, 0.259, 0.966, 0, 0, 0, 1)])
def test_per_class_regions_give_exactly_the_full_argmax(direction):
    """Each class is resampled only where it can win (winning_region); the label map must be
    the argmax of all classes resampled everywhere, on an oblique CT grid too."""
    rng = np.random.default_rng(3)
    ct = image(np.zeros((30, 40, 50), np.int16), spacing=(0.6, 0.6, 1.5), origin=(-3, 5, 2), direction=direction)
    box = Box((2, 3, 4), (28, 37, 46))
    grid = canonical_grid(ct, box, (1.7, 1.3, 2.9))
    logits = rng.normal(0, 0.5, (31, *grid.shape)).astype(np.float32)
    logits[0] += 3.0  # background almost everywhere
    for c in range(1, 31):  # each OAR a random small blob
        z, y, x = (rng.integers(1, s - 1) for s in grid.shape)
        logits[c, max(z - 1, 0) : z + 2, max(y - 2, 0) : y + 2, max(x - 2, 0) : x + 3] += rng.uniform(2, 6)
    probs = np.exp(logits - logits.max(0))
    probs /= probs.sum(0)
    full = uncrop(reference_argmax_on_ct(probs, grid, ct, box), box, (30, 40, 50))
    fast = probabilities_to_ct(probs, grid, ct, box)
    assert len(np.unique(fast)) > 10
    np.testing.assert_array_equal(fast, full)


def test_extend_edges_reads_the_value_at_the_clamped_coordinate():
    """Beyond the last voxel centre the value is that at the nearest point of the image along
    the axis that overshoots, still interpolated along the others (MONAI's ``border``)."""
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)  # z,y,x: value = 12 z + 4 y + x
    image = sitk.GetImageFromArray(arr)
    grid = Grid((2.5, 0.5, 0.0), (1.0, 1.0, 1.0), (3, 1, 1))  # x = 2.5, 3.5, 4.5 (last centre: 3)
    edged = resample_to_grid(image, grid, extend_edges=True)
    np.testing.assert_allclose(edged[0, 0], [2.5 + 2, 3 + 2, 3 + 2])  # y = 0.5 → +2, x clamped at 3
    assert pad_to_cover(image, Grid((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (4, 3, 2))) is image  # inside: no copy
    plain = resample_to_grid(image, grid, default=-7.0)
    assert plain[0, 0, 2] == -7.0  # without it, the default beyond the image


def test_extend_edges_pads_only_the_region_read_and_matches_padding_the_whole_image():
    """pad_to_cover crops to the grid's index hull before padding (no full-CT copy); the
    sampled values are those of padding the whole image, also through a rotation."""
    rng = np.random.default_rng(3)
    image = sitk.GetImageFromArray(rng.normal(size=(30, 40, 50)).astype(np.float32))
    image.SetSpacing((0.7, 0.8, 2.0))
    image.SetOrigin((-5.0, 3.0, 1.0))
    grid = Grid((2.0, 9.0, 30.0), (1.5, 1.5, 2.5), (12, 10, 20))  # overhangs the last z centre (59)
    rotation = sitk.Euler3DTransform((10.0, 20.0, 40.0), 0.05, -0.03, 0.08)
    for transform in (None, rotation):
        whole = sitk.ZeroFluxNeumannPad(image, [0, 0, 0], [0, 0, 20])
        assert pad_to_cover(image, grid, transform).GetNumberOfPixels() < whole.GetNumberOfPixels() / 2
        expected = sitk.GetArrayFromImage(
            sitk.Resample(
                whole, grid.reference(), transform or sitk.Transform(), sitk.sitkLinear, -99.0, sitk.sitkFloat32
            )
        )
        got = resample_to_grid(image, grid, transform, default=-99.0, extend_edges=True)
        assert (expected != -99.0).all()
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_regrid_labels_samples_surfaces_better_than_nearest_neighbour():
    """A 3 mm-radius ball (a cochlea's size) on 1 mm voxels, re-spaced ×1.3 in-plane: per-label
    linear interpolation keeps its volume closer to the true one than nearest neighbour, and a
    flip stays an exact flip."""
    from phantoms import regrid, regrid_labels

    z, y, x = np.mgrid[:30, :30, :30] - 14.6
    arr = ((x**2 + y**2 + z**2) <= 3.0**2).astype(np.uint8) * 7
    arr[(x - 8) ** 2 + (y - 8) ** 2 + z**2 <= 4.0**2] = 3
    labels = sitk.GetImageFromArray(arr)
    true_volume = 4 / 3 * np.pi * 27
    smooth = regrid_labels(labels, "respaced")
    blocky = regrid(labels, "respaced", sitk.sitkNearestNeighbor, 0)
    assert smooth.GetSize() == blocky.GetSize() and smooth.GetSpacing() == blocky.GetSpacing()
    voxel = np.prod(smooth.GetSpacing())
    err_smooth = abs((sitk.GetArrayFromImage(smooth) == 7).sum() * voxel - true_volume)
    err_blocky = abs((sitk.GetArrayFromImage(blocky) == 7).sum() * voxel - true_volume)
    assert err_smooth < err_blocky
    assert set(np.unique(sitk.GetArrayFromImage(smooth))) == {0, 3, 7}
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(regrid_labels(labels, "flipped")),
        sitk.GetArrayFromImage(regrid(labels, "flipped", sitk.sitkNearestNeighbor, 0)),
    )


def tall_body(direction=None) -> sitk.Image:
    """A body 40 slices tall (2 mm) in a CT of 60: its top is slice 49 (z index grows superior)."""
    ct = np.full((60, 24, 24), -1000, np.int16)
    ct[10:50, 4:20, 4:20] = 40
    return image(ct, spacing=(2.0, 2.0, 2.0), direction=direction)


def test_depth_limit_keeps_the_body_within_that_depth_below_its_top():
    ct = tall_body()
    full = body_box(ct, -500, margin_mm=0, work_mm=2)
    cut = body_box(ct, -500, margin_mm=0, work_mm=2, depth_mm=30.0)
    assert full == Box((10, 4, 4), (50, 20, 20))
    assert cut == Box((34, 4, 4), (50, 20, 20))  # 15 slices of 2 mm below the top one, rounded up: 16
    assert body_box(ct, -500, margin_mm=0, work_mm=2, depth_mm=500.0) == full


def test_depth_limit_follows_the_patient_not_the_array_on_a_flipped_ct():
    """z index running inferior: the top of the body is the lowest index."""
    arr = sitk.GetArrayFromImage(tall_body())[::-1].copy()
    ct = image(arr, spacing=(2.0, 2.0, 2.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, -1))
    assert body_box(ct, -500, margin_mm=0, work_mm=2, depth_mm=30.0) == Box((10, 4, 4), (26, 20, 20))


def test_a_ct_with_no_axial_axis_is_not_cut():
    c, s = np.cos(np.radians(45)), np.sin(np.radians(45))
    ct = tall_body(direction=(1, 0, 0, 0, c, -s, 0, s, c))
    assert body_box(ct, -500, 0, work_mm=2, depth_mm=30.0) == body_box(ct, -500, 0, work_mm=2)


def test_the_planned_depth_is_the_lowest_mask_voxel_below_the_top_of_the_body():
    ct = tall_body()
    oars = np.zeros((60, 24, 24), bool)
    oars[30:45, 8:12, 8:12] = True  # lowest OAR slice 30; top of the body 49
    assert depth_below_top_mm(ct, oars, -500, work_mm=2) == 38.0
    assert depth_below_top_mm(ct, np.zeros_like(oars), -500, work_mm=2) is None
    # planned with it, the crop keeps the OAR whole
    box = body_box(ct, -500, margin_mm=0, work_mm=2, depth_mm=38.0)
    assert box.lo[0] <= 30
