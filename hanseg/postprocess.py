"""Class probabilities on the canonical grid → one uint8 label map on the CT's own grid.

Inverse of preprocessing steps 1–2 (:mod:`hanseg.preprocess`): resample back (linear, in
physical space) onto the CT sub-grid of the crop box, slab by slab, straight into the label map
of the whole CT (the crop's inverse, :func:`hanseg.geometry.uncrop`, without a second copy).

Memory: a 31-channel float volume on a 1024² CT grid would need tens of GB, so it is never
built. Classes are resampled one at a time into a running (best probability, best label)
pair. A class whose probability stays below 1/C everywhere on the canonical grid is skipped:
linear interpolation is a convex combination, so on the CT grid the probabilities still sum
to 1, the winner has at least 1/C, and that class can never win. By the same argument a class
can only win at CT voxels whose interpolation reads a canonical voxel where it has ≥ 1/C, so
each class is resampled only into the CT region around those voxels (:func:`winning_region`):
on a 1024² CT a small OAR then costs a small box instead of the whole body box.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .geometry import Box, Grid, index3, physical_corners, resample_from_grid, subgrid, vec3

log = logging.getLogger(__name__)


#: CT voxels resampled back per slab: bounds the float buffers of the way back (the best
#: probability so far and one class's probabilities) whatever the size of the CT.
SLAB_VOXELS = 16_000_000


def probabilities_to_ct(
    probs: np.ndarray,
    grid: Grid,
    ct: sitk.Image,
    box: Box,
    max_components: tuple[int, ...] = (),
    slab_voxels: int = SLAB_VOXELS,
) -> np.ndarray:
    """Argmax label map (uint8, z,y,x, full CT shape) of ``probs`` (C,Z,Y,X on ``grid``),
    optionally cleaned by :func:`keep_largest_components`.

    The box is done in slabs of whole CT slices (:func:`slabs`): each reads only the part of
    the grid its voxels interpolate from (:func:`grid_part`), so its buffers are bounded, and
    the labels go straight into the full-size map (no separate crop to uncrop). The result is
    the same as one pass over the whole box: linear interpolation at a point reads only the
    grid voxels around it, and every part keeps a voxel of margin."""
    labels = np.zeros(tuple(reversed(ct.GetSize())), np.uint8)
    pieces = slabs(box, slab_voxels)
    for slab in pieces:
        target = subgrid(ct, slab)
        found = grid_part(probs, grid, target)
        if found is not None:  # else the slab reads no grid voxel: background, as labels already are
            labels[slab.slices] = _argmax_back(*found, target)
    log.debug("resampled back onto the CT grid in %d slab(s)", len(pieces))
    if max_components:
        keep_largest_components(labels[box.slices], max_components)
    return labels


def slabs(box: Box, max_voxels: int) -> list[Box]:
    """``box`` cut along its first (array z) axis into slabs of at most ``max_voxels`` voxels
    (at least one slice each)."""
    per_slice = max(1, box.shape[1] * box.shape[2])
    step = max(1, max_voxels // per_slice)
    return [
        Box((z, box.lo[1], box.lo[2]), (min(z + step, box.hi[0]), box.hi[1], box.hi[2]))
        for z in range(box.lo[0], box.hi[0], step)
    ]


def grid_part(probs: np.ndarray, grid: Grid, target: sitk.Image) -> tuple[np.ndarray, Grid] | None:
    """The part of ``probs`` (C,Z,Y,X on ``grid``) that linear interpolation at ``target``'s
    voxels reads, and its grid; None when ``target`` lies outside the grid. A view, no copy.

    A voxel of margin on each side keeps every target point at least a voxel inside a cut
    edge, where ITK would clamp instead of interpolating; at the grid's own edges nothing is
    cut, so those behave as before."""
    corners = physical_corners(target, Box.full(tuple(reversed(target.GetSize()))))  # x,y,z mm
    index = (corners - np.asarray(grid.origin_xyz)) / np.asarray(grid.spacing_xyz)  # identity direction
    size = np.asarray(grid.size_xyz)
    lo = np.clip(np.floor(index.min(axis=0)).astype(int) - 1, 0, size)
    hi = np.clip(np.ceil(index.max(axis=0)).astype(int) + 2, 0, size)
    if np.any(hi <= lo):
        return None
    origin = np.asarray(grid.origin_xyz) + lo * np.asarray(grid.spacing_xyz)
    part = Grid(vec3(origin.tolist()), grid.spacing_xyz, index3(hi - lo))
    return probs[(slice(None), *Box(index3(lo[::-1].tolist()), index3(hi[::-1].tolist())).slices)], part


def _argmax_back(probs: np.ndarray, grid: Grid, target: sitk.Image) -> np.ndarray:
    """Argmax (uint8, z,y,x, ``target``'s shape) of ``probs`` resampled onto ``target``, one
    class at a time, each only inside its winning region (see the module docstring)."""
    n_classes = probs.shape[0]
    best_p = resample_from_grid(np.ascontiguousarray(probs[0]), grid, target, default=1.0)  # background elsewhere
    best_label = np.zeros(best_p.shape, np.uint8)
    threshold = 1.0 / n_classes
    grid_image = grid.reference()
    for c in range(1, n_classes):
        region = winning_region(probs[c] >= threshold, grid_image, target)
        if region is None:
            continue
        p = resample_from_grid(np.ascontiguousarray(probs[c]), grid, subgrid(target, region), default=0.0)
        view_p, view_label = best_p[region.slices], best_label[region.slices]
        wins = p > view_p
        view_p[wins] = p[wins]
        view_label[wins] = c
    return best_label


def winning_region(mask: np.ndarray, grid_image: sitk.Image, target: sitk.Image) -> Box | None:
    """The box of ``target`` voxels (z,y,x indices) whose linear interpolation from the grid
    of ``grid_image`` (e.g. :meth:`Grid.reference`) reads at least one voxel of ``mask``; None
    when the mask is empty.

    Linear interpolation reads the grid voxels around a point, so only points whose continuous
    grid index lies within one voxel of the mask's bounding box can read the mask. That box's
    8 corners are mapped into ``target``'s continuous indices (any direction matrix), and the
    bounding box of those, widened by a voxel for rounding, is returned.
    """
    found = ndimage.find_objects(mask.astype(np.uint8))
    if not found or found[0] is None:
        return None
    # grown by a voxel each side; its outer voxel edges then reach half a voxel beyond that
    reads = Box(index3(s.start - 1 for s in found[0]), index3(s.stop + 1 for s in found[0]))
    idx_xyz = np.array(
        [target.TransformPhysicalPointToContinuousIndex(c.tolist()) for c in physical_corners(grid_image, reads)]
    )
    size_xyz = np.array(target.GetSize())
    lo = np.clip(np.floor(idx_xyz.min(0)) - 1, 0, size_xyz).astype(int)
    hi = np.clip(np.ceil(idx_xyz.max(0)) + 2, 0, size_xyz).astype(int)
    if np.any(hi <= lo):
        return None
    return Box(index3(lo[::-1].tolist()), index3(hi[::-1].tolist()))


def keep_largest_components(labels: np.ndarray, max_components: tuple[int, ...]) -> int:
    """In place: for label ``i`` keep its ``max_components[i-1]`` largest 26-connected
    components and set the rest to background. Returns the number of voxels removed.

    Why: stray islands far from an organ barely move Dice but dominate HD95. The allowed
    count comes from the training ground truth (two arytenoids, two buccal mucosa sides...),
    so a genuinely multi-part OAR is never cut.
    """
    removed = 0
    structure = np.ones((3, 3, 3), bool)
    for label, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None or label > len(max_components):
            continue
        part = labels[where]
        components, n = ndimage.label(part == label, structure)
        if n <= max_components[label - 1]:
            continue
        sizes = np.bincount(components.ravel())[1:]
        keep = np.argsort(sizes)[::-1][: max_components[label - 1]] + 1
        drop = (components > 0) & ~np.isin(components, keep)
        part[drop] = 0
        removed += int(drop.sum())
    if removed:
        log.info("post-processing removed %d stray voxels", removed)
    return removed
