"""The same case on other grids (flipped, oblique, re-spaced, sheared): what a robust pipeline
must handle. Used by the end-to-end tests and the model benchmark."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from hanseg.geometry import IDENTITY_DIRECTION

from .errors import PhantomError

_OBLIQUE = math.radians(15.0)
#: kind -> (direction matrix, row-major 3x3; spacing factor x,y,z)
_TILT = math.radians(10.0)
GRID_VARIANTS: dict[str, tuple[tuple[float, ...], tuple[float, float, float]]] = {
    "flipped": ((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (1.0, 1.0, 1.0)),
    "oblique": (
        (math.cos(_OBLIQUE), -math.sin(_OBLIQUE), 0.0, math.sin(_OBLIQUE), math.cos(_OBLIQUE), 0.0, 0.0, 0.0, 1.0),
        (1.0, 1.0, 1.0),
    ),
    "respaced": (IDENTITY_DIRECTION, (1.3, 1.3, 0.8)),
    # "respaced" one axis group at a time, to tell which one costs (benchmarks.phantom_eval)
    "respaced_xy": (IDENTITY_DIRECTION, (1.3, 1.3, 1.0)),
    "respaced_z": (IDENTITY_DIRECTION, (1.0, 1.0, 0.8)),
    # Slices stacked along an axis tilted 10° towards y (a tilted gantry): not orthonormal.
    "sheared": ((1.0, 0.0, 0.0, 0.0, 1.0, math.sin(_TILT), 0.0, 0.0, math.cos(_TILT)), (1.0, 1.0, 1.0)),
}


def regrid(image: sitk.Image, kind: str, interpolator: int = sitk.sitkLinear, default: float = -1000.0) -> sitk.Image:
    """``image`` resampled onto a grid of another ``kind`` (see :data:`GRID_VARIANTS`) around
    the same physical centre: flipped axes, a 15° in-plane rotation, other spacings, or a
    sheared (gantry-tilt) grid."""
    if kind not in GRID_VARIANTS:
        raise PhantomError(f"unknown grid variant {kind!r}; known: {', '.join(GRID_VARIANTS)}")
    direction, factor = GRID_VARIANTS[kind]
    size = np.array(image.GetSize())
    spacing = np.array(image.GetSpacing()) * np.array(factor)
    size = np.ceil(size / np.array(factor)).astype(int)
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint(((np.array(image.GetSize()) - 1) / 2).tolist()))
    d = np.array(direction).reshape(3, 3)
    ref = sitk.Image([int(s) for s in size], image.GetPixelID())
    ref.SetSpacing(spacing.tolist())
    ref.SetDirection(direction)
    ref.SetOrigin((centre - d @ ((size - 1) / 2 * spacing)).tolist())
    return sitk.Resample(image, ref, sitk.Transform(), interpolator, float(default), image.GetPixelID())


def regrid_labels(labels: sitk.Image, kind: str) -> sitk.Image:
    """A label map on the grid of another ``kind``, each label's mask interpolated linearly and
    kept where it reaches 0.5 (the largest wins where two do): the anatomy's surfaces sampled at
    the new voxel centres, as nnU-Net resamples segmentations. Nearest neighbour instead copies
    the old voxels' staircase onto the new grid, and on a coarser grid moves small structures'
    boundaries by up to half an old voxel: a reference that penalises a smooth prediction."""
    array = sitk.GetArrayViewFromImage(labels)
    values = [v for v in np.unique(array) if v != 0]
    if not values:
        return regrid(labels, kind, sitk.sitkNearestNeighbor, 0)
    out: np.ndarray | None = None
    for value in values:
        mask = sitk.GetImageFromArray((array == value).astype(np.float32))
        mask.CopyInformation(labels)
        moved = regrid(mask, kind, sitk.sitkLinear, 0.0)
        p = sitk.GetArrayViewFromImage(moved)
        if out is None:  # the first label's grid gives the shape and geometry of the result
            out, best, geometry = np.zeros(p.shape, array.dtype), np.full(p.shape, 0.5, np.float32), moved
        wins = p >= best
        out[wins], best[wins] = value, p[wins]
    if out is None:  # never: values is not empty
        raise PhantomError("no label to regrid")
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(geometry)
    return result
