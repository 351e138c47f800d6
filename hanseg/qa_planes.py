"""The planes of the QA picture (:mod:`hanseg.qa_picture`) and the outlines drawn on them.

Axis order and units: positions and sizes are physical x, y, z in mm (LPS, as SimpleITK gives
them); a plane comes back as a (rows, cols) array in picture order. Each view is resampled in
physical space onto an axis-aligned plane of square pixels, so a flipped or oblique CT looks like
any other: anterior up in the axial view (the patient's right on the left), superior up in the
coronal and sagittal views (anterior on the left in the sagittal one).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

#: Length in pixels of a dash and of a gap of the truth's outline.
DASH = 4


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper x,y,z mm of the image's voxel edges (its 8 corners)."""
    size = np.array(image.GetSize(), float)
    corners = [
        image.TransformContinuousIndexToPhysicalPoint([(-0.5 if not (k >> a) & 1 else size[a] - 0.5) for a in range(3)])
        for k in range(8)
    ]
    arr = np.array(corners)
    return arr.min(axis=0), arr.max(axis=0)


def centre_of(ct: sitk.Image, *label_maps: sitk.Image | None) -> np.ndarray:
    """Physical x,y,z of the centre of the first non-empty label map's voxels, else the CT's."""
    for labels in label_maps:
        if labels is None:
            continue
        arr = sitk.GetArrayViewFromImage(labels)
        zyx = np.nonzero(arr)
        if len(zyx[0]):
            index = [float(zyx[a].mean()) for a in (2, 1, 0)]
            return np.array(labels.TransformContinuousIndexToPhysicalPoint(index))
    lo, hi = physical_bounds(ct)
    middle: np.ndarray = (lo + hi) / 2
    return middle


@dataclass(frozen=True)
class View:
    name: str
    rows: int  # physical axis (0 x, 1 y, 2 z) down the picture
    cols: int  # physical axis across the picture
    flip_rows: bool  # rows run against the axis (superior up)


VIEWS = (
    View("axial", 1, 0, False),  # anterior (small y) up, patient's right (small x) left
    View("coronal", 2, 0, True),  # superior up
    View("sagittal", 2, 1, True),  # superior up, anterior left
)


def plane_of(
    image: sitk.Image,
    view: View,
    centre: np.ndarray,
    lo: np.ndarray,
    spacing: float,
    shape_xyz: np.ndarray,
    interpolator: int,
    default: float,
    transform: sitk.Transform | None = None,
) -> np.ndarray:
    """``image`` on the view's plane through ``centre``: a (rows, cols) array."""
    size = [int(n) for n in shape_xyz]
    origin = lo + spacing / 2
    normal = 3 - view.rows - view.cols
    size[normal] = 1
    origin[normal] = centre[normal]
    ref = sitk.Image(size, sitk.sitkUInt8)
    ref.SetSpacing([spacing] * 3)
    ref.SetOrigin(origin.tolist())
    out = sitk.Resample(image, ref, transform or sitk.Transform(), interpolator, default, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(out)  # z,y,x
    axes_zyx = {0: 2, 1: 1, 2: 0}
    plane = np.squeeze(arr, axis=axes_zyx[normal])
    # what is left is in z,y,x order of the two remaining axes: rows first when rows > cols in x,y,z
    if view.rows < view.cols:
        plane = plane.T
    return plane[::-1] if view.flip_rows else plane


def upscale_labels(plane: np.ndarray, zoom: int) -> np.ndarray:
    return np.repeat(np.repeat(plane, zoom, axis=0), zoom, axis=1)


def boundary(labels: np.ndarray) -> np.ndarray:
    """Pixels of a label (> 0) with a 4-neighbour of another value (the picture's edge is no
    neighbour)."""
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    differs = (
        (padded[:-2, 1:-1] != centre)
        | (padded[2:, 1:-1] != centre)
        | (padded[1:-1, :-2] != centre)
        | (padded[1:-1, 2:] != centre)
    )
    out: np.ndarray = differs & (labels > 0)
    return out


def dash_on(outline: np.ndarray, dash: int = DASH) -> np.ndarray:
    """Of the ``outline`` pixels, those on a dash: each 8-connected piece is walked breadth-first
    from its first pixel and the path length decides (``dash`` on, ``dash`` off)."""
    on = np.zeros_like(outline)
    todo = set(zip(*np.nonzero(outline)))
    while todo:
        start = min(todo)
        todo.discard(start)
        queue = deque([(start, 0)])
        while queue:
            (r, c), d = queue.popleft()
            if (d // dash) % 2 == 0:
                on[r, c] = True
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    nxt = (r + dr, c + dc)
                    if nxt in todo:
                        todo.discard(nxt)
                        queue.append((nxt, d + 1))
    return on
