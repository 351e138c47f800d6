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
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

log = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]
IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Box:
    """Half-open voxel box ``[lo, hi)`` in z,y,x index order."""

    lo: tuple[int, int, int]
    hi: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(h - l for l, h in zip(self.lo, self.hi))  # type: ignore[return-value]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(l, h) for l, h in zip(self.lo, self.hi))  # type: ignore[return-value]

    @staticmethod
    def full(shape: tuple[int, ...]) -> "Box":
        return Box((0, 0, 0), tuple(int(s) for s in shape))  # type: ignore[arg-type]


# --- crop / uncrop ------------------------------------------------------------------------

def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """The part of a z,y,x ``array`` inside ``box`` (a view, no copy)."""
    return array[box.slices]


def uncrop(array: np.ndarray, box: Box, full_shape: tuple[int, int, int], fill: float = 0) -> np.ndarray:
    """Inverse of :func:`crop`: place ``array`` at ``box`` in a new ``full_shape`` array."""
    if array.shape != box.shape:
        raise ValueError(f"array shape {array.shape} != box shape {box.shape}")
    out = np.full(full_shape, fill, dtype=array.dtype)
    out[box.slices] = array
    return out


def body_box(ct: sitk.Image, threshold_hu: float, margin_mm: float, work_mm: float = 4.0) -> Box:
    """Box around the patient's body, with ``margin_mm`` on every side (CT voxel indices).

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
    spacing_zyx = np.array(ct.GetSpacing()[::-1])
    stride = np.maximum(1, np.round(work_mm / spacing_zyx)).astype(int)
    full = Box.full(tuple(reversed(ct.GetSize())))
    pooled = min_pool(sitk.GetArrayViewFromImage(ct), tuple(int(s) for s in stride))
    body = _deepest_component(ndimage.binary_opening(pooled > threshold_hu, iterations=1), spacing_zyx * stride)
    if body is None:
        log.warning("no body found above %.0f HU: using the whole CT", threshold_hu)
        return full
    zyx = np.nonzero(body)
    margin = np.ceil(margin_mm / spacing_zyx).astype(int) + stride - 1
    lo = np.array([c.min() for c in zyx]) * stride - margin
    hi = (np.array([c.max() for c in zyx]) + 1) * stride + margin
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, full.hi)
    return Box(tuple(int(v) for v in lo), tuple(int(v) for v in hi))  # type: ignore[arg-type]


def min_pool(arr: np.ndarray, stride: tuple[int, int, int]) -> np.ndarray:
    """Minimum over ``stride`` blocks (z,y,x); a partial block at the end counts as a block.
    Slab by slab, so a 1024² CT never gets a second full-size copy."""
    sz, sy, sx = stride
    ny, nx = -(-arr.shape[1] // sy), -(-arr.shape[2] // sx)
    out = np.empty((-(-arr.shape[0] // sz), ny, nx), arr.dtype)
    big = np.iinfo(arr.dtype).max if np.issubdtype(arr.dtype, np.integer) else np.inf
    for k in range(out.shape[0]):
        slab = arr[k * sz:(k + 1) * sz].min(axis=0)
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
    depth = ndimage.distance_transform_edt(mask, sampling=spacing_zyx)
    deepest = ndimage.maximum(depth, labelled, index=np.arange(1, n + 1))
    return labelled == 1 + int(np.argmax(deepest))


# --- grids ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """An axis-aligned (identity direction) voxel grid in physical mm, x,y,z order."""

    origin_xyz: Vec3
    spacing_xyz: Vec3
    size_xyz: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape z,y,x."""
        return tuple(reversed(self.size_xyz))  # type: ignore[return-value]

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


def canonical_grid(image: sitk.Image, box: Box, spacing_xyz: Vec3) -> Grid:
    """Identity-direction grid at ``spacing_xyz`` covering the physical extent of ``box``."""
    corners = physical_corners(image, box)
    spacing = np.asarray(spacing_xyz, float)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    size = np.maximum(1, np.ceil((hi - lo) / spacing - 1e-6)).astype(int)
    origin = lo + spacing / 2  # first voxel centre half a voxel inside the outer edge
    return Grid(tuple(origin.tolist()), tuple(spacing.tolist()), tuple(int(s) for s in size))  # type: ignore[arg-type]


# --- resample / resample back ---------------------------------------------------------------

def resample_to_grid(image: sitk.Image, grid: Grid, transform: sitk.Transform | None = None,
                     interpolator: int = sitk.sitkLinear, default: float = 0.0) -> np.ndarray:
    """Sample ``image`` at the voxel centres of ``grid``; returns float32 z,y,x.

    ``transform`` maps grid (CT) physical points to ``image`` physical points, the
    convention of ``sitk.Resample`` and of a registration with fixed=CT, moving=image.
    """
    out = sitk.Resample(image, grid.reference(), transform or sitk.Transform(),
                        interpolator, float(default), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def resample_from_grid(array_zyx: np.ndarray, grid: Grid, target: sitk.Image,
                       interpolator: int = sitk.sitkLinear, default: float = 0.0) -> np.ndarray:
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
