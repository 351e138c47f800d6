"""Crop/uncrop and resample/resample-back, each forward step beside its inverse.

Units and axes (see :mod:`hanseg.io`): a :class:`Box` is in CT **voxel indices, z,y,x,
half-open**; a :class:`Grid` is in **millimetres, x,y,z** (SimpleITK order) with identity
direction. Arrays are z,y,x.

Why a canonical (identity-direction) grid: the network must always see anatomy the same
way round. A CT stored flipped or oblique is resampled in physical space onto an
axis-aligned LPS grid, so its array looks like every training case; the result is resampled
back in physical space onto the CT's own grid. Nothing here ever flips array axes by hand.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import SupportsFloat, SupportsInt

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

log = logging.getLogger(__name__)

#: An x,y,z point, vector or spacing in mm.
Vec3 = tuple[float, float, float]
#: Three voxel indices or counts (z,y,x for a :class:`Box`, x,y,z for a :class:`Grid` size).
Index3 = tuple[int, int, int]
IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def vec3(values: Iterable[SupportsFloat]) -> Vec3:
    """The three values of an x,y,z sequence (tuple, list, array) as Python floats."""
    x, y, z = (float(v) for v in values)
    return x, y, z


def index3(values: Iterable[SupportsInt]) -> Index3:
    """The three values of an index sequence (tuple, list, array) as Python ints."""
    i, j, k = (int(v) for v in values)
    return i, j, k


@dataclass(frozen=True)
class Box:
    """Half-open voxel box ``[lo, hi)`` in z,y,x index order."""

    lo: Index3
    hi: Index3

    @property
    def shape(self) -> Index3:
        (z0, y0, x0), (z1, y1, x1) = self.lo, self.hi
        return z1 - z0, y1 - y0, x1 - x0

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        (z0, y0, x0), (z1, y1, x1) = self.lo, self.hi
        return slice(z0, z1), slice(y0, y1), slice(x0, x1)

    @staticmethod
    def full(shape: Iterable[SupportsInt]) -> Box:
        return Box((0, 0, 0), index3(shape))


# --- crop / uncrop ------------------------------------------------------------------------


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """The part of a z,y,x ``array`` inside ``box`` (a view, no copy)."""
    return array[box.slices]


def uncrop(array: np.ndarray, box: Box, full_shape: Index3, fill: float = 0) -> np.ndarray:
    """Inverse of :func:`crop`: place ``array`` at ``box`` in a new ``full_shape`` array."""
    if array.shape != box.shape:
        raise ValueError(f"array shape {array.shape} != box shape {box.shape}")
    out = np.full(full_shape, fill, dtype=array.dtype)
    out[box.slices] = array
    return out


@dataclass(frozen=True)
class Crop:
    """Where a case is segmented, CT voxel indices z,y,x.

    ``box``: the body (with a margin), down to a depth below its top when one is given.
    ``fov``: the part of the CT taken as its field of view: the network lattice is anchored at
    its corner and the sliding windows are laid over it (:func:`window_grid`). The whole CT, or,
    when the depth cut the body, the CT down to the cut, as if the scanner had stopped there: a
    CT that reaches the thorax then gets the windows of one that ends below the neck, not more.
    """

    box: Box
    fov: Box


def body_box(
    ct: sitk.Image, threshold_hu: float, margin_mm: float, work_mm: float = 4.0, depth_mm: float | None = None
) -> Box:
    """Box around the patient's body, with ``margin_mm`` on every side (CT voxel indices);
    with ``depth_mm``, only the body within that many mm below its top (:func:`within_depth`).

    Runs on a ``work_mm`` copy so it costs little on a 1024² CT. That copy takes the minimum
    of each block (:func:`min_pool`), not every n-th voxel: a 2 mm air gap between the body and
    the couch must survive, or the couch joins the body (seen on a 512² phantom). The body is
    the connected component above ``threshold_hu`` that reaches deepest inside itself (the
    largest distance to its own outside): a couch or a head rest can have more voxels than a
    head in a wide field of view, but it is a thin slab. A binary opening first cuts thin
    bridges between them. The box grows by one block to undo the min-pool's erosion. If nothing
    is found, the whole image is returned (and logged): cropping is a speed-up, never a reason
    to lose anatomy.
    """
    return body_crops(ct, threshold_hu, margin_mm, (depth_mm,), work_mm)[0].box


def body_crops(
    ct: sitk.Image,
    threshold_hu: float,
    margin_mm: float,
    depths_mm: Sequence[float | None],
    work_mm: float = 4.0,
    found: BodyMask | None = None,
) -> list[Crop]:
    """:func:`body_box` for several depths at the price of one body mask, each with its field of
    view. Where a depth cuts the body, the box ends at the cut: the depth already holds its margin.
    ``found``: :func:`body_mask`'s result for the same CT, threshold and ``work_mm``, if already made."""
    full = Box.full(tuple(reversed(ct.GetSize())))
    body, stride = found if found is not None else body_mask(ct, threshold_hu, work_mm)
    if body is None:
        log.warning("no body found above %.0f HU: using the whole CT", threshold_hu)
        return [Crop(full, full) for _ in depths_mm]
    return [
        _crop_around(within_depth(body, ct, stride, d) if d is not None else body, body, ct, stride, margin_mm, full)
        for d in depths_mm
    ]


def _crop_around(
    part: np.ndarray, body: np.ndarray, ct: sitk.Image, stride: np.ndarray, margin_mm: float, full: Box
) -> Crop:
    """The CT voxel box of ``part`` of the pooled ``body``, ``margin_mm`` wider on every side
    but the one where ``part`` was cut from ``body`` (see :func:`within_depth`), and its field
    of view (:class:`Crop`)."""
    spacing_zyx = np.array(ct.GetSpacing()[::-1])
    margin = np.ceil(margin_mm / spacing_zyx).astype(int) + stride - 1
    zyx_lo, zyx_hi = _extent(part)
    lo, hi = zyx_lo * stride - margin, (zyx_hi + 1) * stride + margin
    lo, hi = np.maximum(lo, 0), np.minimum(hi, full.hi)
    fov_lo, fov_hi = np.array(full.lo), np.array(full.hi)
    cut = superior_axis(ct) if part.sum() < body.sum() else None
    if cut is not None:  # box and field of view stop at the cut, without a margin below it
        axis, sign = cut
        if sign > 0:
            lo[axis] = fov_lo[axis] = zyx_lo[axis] * stride[axis]
        else:
            hi[axis] = fov_hi[axis] = min((zyx_hi[axis] + 1) * stride[axis], full.hi[axis])
    return Crop(_box(lo, hi), _box(fov_lo, fov_hi))


def _box(lo: np.ndarray, hi: np.ndarray) -> Box:
    return Box(index3(lo), index3(hi))


def _extent(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) index per axis (z,y,x) of a non-empty mask's voxels."""
    zyx = np.nonzero(mask)
    return np.array([c.min() for c in zyx]), np.array([c.max() for c in zyx])


#: :func:`body_mask`'s result: the pooled body (or None) and the pooling stride.
BodyMask = tuple[np.ndarray | None, np.ndarray]


def body_mask(ct: sitk.Image, threshold_hu: float, work_mm: float = 4.0) -> BodyMask:
    """(the body on a ``work_mm`` min-pooled copy of ``ct``, z,y,x bool, or None when there is
    none; the pooling stride, z,y,x CT voxels per pooled voxel). See :func:`body_box`."""
    spacing_zyx = np.array(ct.GetSpacing()[::-1])
    stride = np.maximum(1, np.round(work_mm / spacing_zyx)).astype(int)
    pooled = min_pool(sitk.GetArrayViewFromImage(ct), index3(stride))
    return _deepest_component(ndimage.binary_opening(pooled > threshold_hu, iterations=1), spacing_zyx * stride), stride


def depth_below_top_mm(ct: sitk.Image, mask_zyx: np.ndarray, threshold_hu: float, work_mm: float = 4.0) -> float | None:
    """How far (mm) the lowest voxel of ``mask_zyx`` (on ``ct``'s grid: e.g. the OARs) lies below
    the top of the body, measured as :func:`within_depth` cuts: what training plans the crop
    depth from. None without a body, a mask, or roughly axial slices."""
    body, stride = body_mask(ct, threshold_hu, work_mm)
    found = superior_axis(ct)
    if body is None or found is None or not mask_zyx.any():
        return None
    axis, sign = found
    top_ct = top_ct_slice(body, stride, axis, sign, mask_zyx.shape[axis])
    lowest = _extreme_slice(mask_zyx, axis, -sign)
    return float(abs(top_ct - lowest) * slice_step_mm(ct, axis))


def top_ct_slice(body: np.ndarray, stride: np.ndarray, axis: int, sign: int, n_slices: int) -> int:
    """The CT slice (along ``axis``, of ``n_slices``) of the body's top pooled block that lies
    nearest the patient's top: where depths below the top of the body are measured from."""
    top = _extreme_slice(body, axis, sign)
    return int(min(top * stride[axis] + stride[axis] - 1, n_slices - 1) if sign > 0 else top * stride[axis])


def _extreme_slice(mask: np.ndarray, axis: int, sign: int) -> int:
    """The index along ``axis`` of ``mask``'s last slice holding a voxel (first, for sign < 0)."""
    present = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    return int(present.max() if sign > 0 else present.min())


def slice_step_mm(image: sitk.Image, axis: int) -> float:
    """Physical z (mm) between neighbouring slices along array ``axis``."""
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)
    return float(image.GetSpacing()[2 - axis] * abs(d[2, 2 - axis]))


def superior_axis(image: sitk.Image, min_cosine: float = 0.9) -> tuple[int, int] | None:
    """(array axis, z=0 y=1 x=2; +1 or -1) of ``image``'s index axis that points most nearly to
    the patient's superior (+z in LPS), with the sign of that step; None when no axis is within
    about 25° of it (a CT not stored as roughly axial slices)."""
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)
    k = int(np.argmax(np.abs(d[2])))  # index axis, x,y,z order
    if abs(d[2, k]) < min_cosine:
        return None
    return 2 - k, int(np.sign(d[2, k]))


def within_depth(
    mask: np.ndarray, image: sitk.Image, stride: tuple[int, ...] | np.ndarray, depth_mm: float
) -> np.ndarray:
    """``mask`` (z,y,x, on ``image``'s grid subsampled by ``stride``) kept only within
    ``depth_mm`` below its most superior voxel, along :func:`superior_axis`.

    Why: HaN-Seg CTs reach from the head alone down to the thorax. The OARs lie within a depth
    below the top of the head that the plan learns from the training ground truth, so what is
    below it need not be segmented (nor held in memory, nor run through the network). The
    depth is rounded up to whole slices, so the cut never falls short of it. A CT whose slices
    are not roughly axial is left whole."""
    found = superior_axis(image)
    if found is None or not mask.any():
        log.info("no depth limit: the CT's slices are not axial enough to tell superior from the voxel axes")
        return mask
    axis, sign = found
    keep = int(np.ceil(depth_mm / (slice_step_mm(image, axis) * np.asarray(stride)[axis])))
    top = _extreme_slice(mask, axis, sign)
    lo, hi = (top - keep, top + 1) if sign > 0 else (top, top + keep + 1)
    out = np.zeros_like(mask)
    index = [slice(None)] * 3
    index[axis] = slice(max(lo, 0), hi)
    out[tuple(index)] = mask[tuple(index)]
    return out


def min_pool(arr: np.ndarray, stride: Index3) -> np.ndarray:
    """Minimum over ``stride`` blocks (z,y,x); a partial block at the end counts as a block.
    Slab by slab, so a 1024² CT never gets a second full-size copy."""
    sz, sy, sx = stride
    ny, nx = -(-arr.shape[1] // sy), -(-arr.shape[2] // sx)
    out = np.empty((-(-arr.shape[0] // sz), ny, nx), arr.dtype)
    big = np.iinfo(arr.dtype).max if np.issubdtype(arr.dtype, np.integer) else np.inf
    for k in range(out.shape[0]):
        slab = arr[k * sz : (k + 1) * sz].min(axis=0)
        padded = np.full((ny * sy, nx * sx), big, arr.dtype)
        padded[: slab.shape[0], : slab.shape[1]] = slab
        out[k] = padded.reshape(ny, sy, nx, sx).min(axis=(1, 3))
    return out


def _deepest_component(mask: np.ndarray, spacing_zyx: np.ndarray) -> np.ndarray | None:
    """The connected component of ``mask`` holding the point farthest (mm, in-plane and
    through-plane) from the mask's outside; None for an empty mask."""
    labelled, n = ndimage.label(mask)
    if n == 0:
        return None
    # the distance only on the mask's bounding box grown by a voxel of background: the same
    # distances (the nearest background voxel of a mask voxel lies inside that box), at a
    # fraction of the cost where the body fills part of the field of view
    (box,) = ndimage.find_objects(mask.astype(np.uint8))
    grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    depth = np.zeros(mask.shape)
    depth[grown] = ndimage.distance_transform_edt(mask[grown], sampling=spacing_zyx)
    deepest = ndimage.maximum(depth, labelled, index=np.arange(1, n + 1))
    component: np.ndarray = labelled == 1 + int(np.argmax(deepest))
    return component


# --- grids ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """An axis-aligned (identity direction) voxel grid in physical mm, x,y,z order."""

    origin_xyz: Vec3
    spacing_xyz: Vec3
    size_xyz: Index3

    @property
    def shape(self) -> Index3:
        """Array shape z,y,x."""
        x, y, z = self.size_xyz
        return z, y, x

    def reference(self) -> sitk.Image:
        """An empty image with this geometry, for ``sitk.Resample``."""
        ref = sitk.Image([int(s) for s in self.size_xyz], sitk.sitkUInt8)
        ref.SetOrigin(self.origin_xyz)
        ref.SetSpacing(self.spacing_xyz)
        ref.SetDirection(IDENTITY_DIRECTION)
        return ref


def subgrid(image: sitk.Image, box: Box) -> sitk.Image:
    """An empty image on ``image``'s grid restricted to ``box`` (same spacing and direction)."""
    index_xyz = [int(v) for v in reversed(box.lo)]
    ref = sitk.Image([int(s) for s in reversed(box.shape)], sitk.sitkUInt8)
    ref.SetSpacing(image.GetSpacing())
    ref.SetDirection(image.GetDirection())
    ref.SetOrigin(image.TransformIndexToPhysicalPoint(index_xyz))
    return ref


def physical_corners(image: sitk.Image, box: Box) -> np.ndarray:
    """The 8 outer corners (voxel edges, not centres) of ``box`` in physical mm, (8, 3) x,y,z."""
    lo_xyz = np.array(box.lo[::-1], float) - 0.5
    hi_xyz = np.array(box.hi[::-1], float) - 0.5
    corners = [np.where(sel, hi_xyz, lo_xyz) for sel in itertools.product((0, 1), repeat=3)]
    return np.array([image.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners])


def lattice_anchor(image: sitk.Image, fov: Box | None = None) -> np.ndarray:
    """The voxel centre of ``image`` (of its ``fov`` part, when given: see :class:`Crop`) with the
    smallest physical x, y and z (per axis), mm x,y,z.

    For an axis-aligned CT (any flips or axis permutation) this is the first voxel centre after
    reorienting to LPS, which is where MONAI's ``Orientationd`` + ``Spacingd`` put the first
    voxel of their resampled grid: anchoring our lattice there makes our network grid a sub-block
    of a bundle pipeline's, so both see the same input values (docs/benchmarks.md, "Agreement").
    """
    anchor: np.ndarray = corner_centres(image, fov).min(axis=0)
    return anchor


def corner_centres(image: sitk.Image, box: Box | None = None) -> np.ndarray:
    """The 8 corner voxel *centres* of ``image`` (or of its ``box``) in physical mm, (8, 3) x,y,z."""
    box = box or Box.full(tuple(reversed(image.GetSize())))
    lo, hi = np.array(box.lo[::-1], float), np.array(box.hi[::-1], float) - 1
    return np.array(
        [
            image.TransformContinuousIndexToPhysicalPoint(np.where(sel, hi, lo).tolist())
            for sel in itertools.product((0, 1), repeat=3)
        ]
    )


def _lattice_range(
    image: sitk.Image, box: Box, spacing: np.ndarray, anchor: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First and last lattice indices (x,y,z) whose cells hold the box's outer edges."""
    corners = physical_corners(image, box)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    k0 = np.floor((lo - anchor) / spacing + 0.5 + 1e-6)
    k1 = np.ceil((hi - anchor) / spacing - 0.5 - 1e-6)
    return k0.astype(int), np.maximum(k0, k1).astype(int)


def canonical_grid(image: sitk.Image, box: Box, spacing_xyz: Vec3, fov: Box | None = None) -> Grid:
    """Identity-direction grid at ``spacing_xyz`` covering the physical extent of ``box``.

    Its voxel centres lie on the lattice ``lattice_anchor(image) + k * spacing`` (k integer);
    the first and last voxels are those whose cells hold the box's outer edges, so the grid
    covers the box and overhangs it by less than one voxel per side.
    """
    spacing, anchor = np.asarray(spacing_xyz, float), lattice_anchor(image, fov)
    k0, k1 = _lattice_range(image, box, spacing, anchor)
    origin = anchor + k0 * spacing
    return Grid(vec3(origin.tolist()), vec3(spacing.tolist()), index3(k1 - k0 + 1))


def lattice_size(image: sitk.Image, spacing_xyz: Vec3, fov: Box | None = None) -> np.ndarray:
    """Voxels per axis (x,y,z) of the whole field of view resampled onto the lattice: MONAI
    ``Spacingd``'s output shape: round(extent / spacing + 1), extent between the outer voxel
    centres (rounded as MONAI does, half to even *after* adding 1: 39.5 + 1 → 40)."""
    size: np.ndarray = np.round(
        np.ptp(corner_centres(image, fov), axis=0) / np.asarray(spacing_xyz, float) + 1.0
    ).astype(int)
    return size


def window_starts(n: int, roi: int, overlap: float) -> list[int]:
    """Sliding-window starts along one axis of length ``n`` as MONAI places them: every
    ``int(roi * (1 - overlap))`` voxels from 0, the last one moved back to end at ``n``.
    An axis no longer than the window has one (MONAI pads it): start 0."""
    if n <= roi:
        return [0]
    step = max(int(roi * (1 - overlap)), 1)
    count = next(d for d in range(n) if d * step + roi >= n) + 1
    return [min(d * step, n - roi) for d in range(count)]


def window_grid(
    image: sitk.Image, box: Box, spacing_xyz: Vec3, roi_zyx: tuple[int, ...], overlap: float, fov: Box | None = None
) -> Grid:
    """The :func:`canonical_grid` of ``box`` widened to the union of the sliding windows that a
    pass over the *whole* field of view (on the same lattice) would place over the box.

    Run over this grid, MONAI's sliding window places exactly those windows (its starts from 0
    every step, the last one clamped, reproduce the whole-FOV layout on this sub-range), so the
    blended logits on the box equal a whole-field-of-view pass's (what a bundle pipeline with
    ``Spacingd`` computes) while only the windows near the body are run. The box is grown by
    one voxel first, since resampling back interpolates grid voxels just outside it. ``fov``
    (see :class:`Crop`): the part of the image taken as the field of view; the whole image if None.
    """
    spacing, anchor = np.asarray(spacing_xyz, float), lattice_anchor(image, fov)
    k0, k1 = _lattice_range(image, box, spacing, anchor)
    n = lattice_size(image, spacing_xyz, fov)
    lo, hi = np.maximum(k0 - 1, 0), np.minimum(k1 + 1, n - 1)
    first, last = lo.copy(), hi.copy()
    for axis, roi in enumerate(reversed(roi_zyx)):  # x,y,z
        if n[axis] <= roi:
            first[axis], last[axis] = 0, n[axis] - 1
            continue
        spans = [
            (s, s + roi - 1)
            for s in window_starts(int(n[axis]), int(roi), overlap)
            if s <= hi[axis] and s + roi - 1 >= lo[axis]
        ]
        first[axis], last[axis] = spans[0][0], spans[-1][1]
    origin = anchor + first * spacing
    return Grid(vec3(origin.tolist()), vec3(spacing.tolist()), index3(last - first + 1))


# --- resample / resample back ---------------------------------------------------------------


def pad_to_cover(image: sitk.Image, grid: Grid, transform: sitk.Transform | None = None) -> sitk.Image:
    """``image`` with its edge voxels repeated outwards (physical positions unchanged) until its
    voxel centres span every point of ``grid``: linear interpolation there then reads the value
    at the coordinate clamped to the image, per axis (MONAI's bilinear ``border`` padding).
    Returns ``image`` itself, not a copy, when the grid already lies inside its voxel centres."""
    corners = corner_centres(grid.reference())
    if transform is not None:
        corners = np.array([transform.TransformPoint(c.tolist()) for c in corners])
    index = np.array([image.TransformPhysicalPointToContinuousIndex(c.tolist()) for c in corners])
    size = np.array(image.GetSize())
    lower = np.ceil(np.maximum(0.0, -index.min(axis=0)) - 1e-6).astype(int)
    upper = np.ceil(np.maximum(0.0, index.max(axis=0) - (size - 1)) - 1e-6).astype(int)
    if not (lower.any() or upper.any()):
        return image
    # Pad only the region the grid reads (its corners' index hull, one voxel wider for the
    # interpolation): padding a whole 1024²×208 CT would copy ~0.4 GB to read a head's worth.
    lo = np.clip(np.floor(index.min(axis=0)).astype(int) - 1, 0, size - 1)
    hi = np.clip(np.ceil(index.max(axis=0)).astype(int) + 1, 0, size - 1)
    region = sitk.RegionOfInterest(image, [int(v) for v in hi - lo + 1], [int(v) for v in lo])
    padded: sitk.Image = sitk.ZeroFluxNeumannPad(region, [int(v) for v in lower], [int(v) for v in upper])
    return padded


def resample_to_grid(
    image: sitk.Image,
    grid: Grid,
    transform: sitk.Transform | None = None,
    interpolator: int = sitk.sitkLinear,
    default: float = 0.0,
    extend_edges: bool = False,
) -> np.ndarray:
    """Sample ``image`` at the voxel centres of ``grid``; returns float32 z,y,x.

    ``transform`` maps grid (CT) physical points to ``image`` physical points, the
    convention of ``sitk.Resample`` and of a registration with fixed=CT, moving=image.
    Points outside ``image`` get ``default``, or with ``extend_edges`` the nearest edge voxel
    (MONAI's ``padding_mode="border"``: a field of view that ends inside the body, as CTs do
    at the neck, continues instead of meeting a wall of air).
    """
    if extend_edges:
        image = pad_to_cover(image, grid, transform)
    out = sitk.Resample(
        image, grid.reference(), transform or sitk.Transform(), interpolator, float(default), sitk.sitkFloat32
    )
    return sitk.GetArrayFromImage(out)


def resample_from_grid(
    array_zyx: np.ndarray, grid: Grid, target: sitk.Image, interpolator: int = sitk.sitkLinear, default: float = 0.0
) -> np.ndarray:
    """Inverse of :func:`resample_to_grid`: values on ``grid`` sampled onto ``target``'s grid.

    ``target`` gives geometry only (e.g. :func:`subgrid` of the CT). Returns float32 z,y,x
    with ``target``'s shape, or uint8 for nearest-neighbour interpolation of labels.
    """
    if array_zyx.shape != grid.shape:
        raise ValueError(f"array shape {array_zyx.shape} != grid shape {grid.shape}")
    source = sitk.GetImageFromArray(array_zyx)
    source.SetOrigin(grid.origin_xyz)
    source.SetSpacing(grid.spacing_xyz)
    source.SetDirection(IDENTITY_DIRECTION)
    pixel = sitk.sitkUInt8 if interpolator == sitk.sitkNearestNeighbor else sitk.sitkFloat32
    out = sitk.Resample(source, target, sitk.Transform(), interpolator, float(default), pixel)
    return sitk.GetArrayFromImage(out)
