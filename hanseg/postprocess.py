"""Class probabilities on the canonical grid → one uint8 label map on the CT's own grid.

Inverse of preprocessing steps 1–2 (:mod:`hanseg.preprocess`): resample back (linear, in
physical space) onto the CT sub-grid of the crop box, then uncrop into the full CT.

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

from .geometry import Box, Grid, physical_corners, resample_from_grid, subgrid, uncrop

log = logging.getLogger(__name__)


def probabilities_to_ct(probs: np.ndarray, grid: Grid, ct: sitk.Image, box: Box,
                        max_components: tuple[int, ...] = ()) -> np.ndarray:
    """Argmax label map (uint8, z,y,x, full CT shape) of ``probs`` (C,Z,Y,X on ``grid``),
    optionally cleaned by :func:`keep_largest_components`."""
    n_classes = probs.shape[0]
    target = subgrid(ct, box)
    best_p = resample_from_grid(probs[0], grid, target, default=1.0)  # background everywhere else
    best_label = np.zeros(best_p.shape, np.uint8)
    threshold = 1.0 / n_classes
    skipped = 0
    grid_image = grid.reference()
    for c in range(1, n_classes):
        region = winning_region(probs[c] >= threshold, grid_image, target)
        if region is None:
            skipped += 1
            continue
        p = resample_from_grid(probs[c], grid, subgrid(target, region), default=0.0)
        view_p, view_label = best_p[region.slices], best_label[region.slices]
        wins = p > view_p
        view_p[wins] = p[wins]
        view_label[wins] = c
    log.debug("resampled %d classes back to the CT grid (%d could not win)", n_classes - 1 - skipped, skipped)
    if max_components:
        keep_largest_components(best_label, max_components)
    return uncrop(best_label, box, tuple(reversed(ct.GetSize())))  # type: ignore[arg-type]


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
    reads = Box(tuple(s.start - 1 for s in found[0]), tuple(s.stop + 1 for s in found[0]))  # type: ignore[arg-type]
    idx_xyz = np.array([target.TransformPhysicalPointToContinuousIndex(c.tolist())
                        for c in physical_corners(grid_image, reads)])
    size_xyz = np.array(target.GetSize())
    lo = np.clip(np.floor(idx_xyz.min(0)) - 1, 0, size_xyz).astype(int)
    hi = np.clip(np.ceil(idx_xyz.max(0)) + 2, 0, size_xyz).astype(int)
    if np.any(hi <= lo):
        return None
    return Box(tuple(lo[::-1].tolist()), tuple(hi[::-1].tolist()))  # type: ignore[arg-type]


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
