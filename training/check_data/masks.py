"""The OAR masks of one case: grid, values, emptiness, volume, overlaps, and the label map
training would paint from them (:func:`dataset.raw.paint`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dataset.oar_data import FILE_NAME as OAR_DATA_CSV
from dataset.raw import paint
from hanseg.errors import ImageReadError, InvalidImageError
from hanseg.io import read_image
from hanseg.labels import LABEL_IDS

from .images import ImageInfo, grid_differences, read_header
from .naming import CaseFiles
from .rules import Findings, Settings


@dataclass
class LabelPainter:
    """The label map training builds (:func:`dataset.raw.paint`: the higher id wins), with the
    voxels each OAR lost to a later one counted on the way (mutable: it is the work array)."""

    labels: np.ndarray  # z, y, x uint8
    overlaps: Counter = field(default_factory=Counter)  # (loser, winner) -> voxels

    def paint(self, oar: str, indices: np.ndarray) -> None:
        for loser, voxels in paint(self.labels, indices, oar).items():
            self.overlaps[(loser, oar)] += voxels


def _occupied_slices(arr: np.ndarray) -> tuple[int, int]:
    """(first, last + 1) z slice holding a nonzero voxel; (0, 0) for an empty mask. A per-slice
    maximum is a vectorised scan without temporaries, several times faster than ``nonzero``."""
    planes = arr.reshape(arr.shape[0], -1)
    busy = planes.max(axis=1) > 0 if arr.dtype.kind == "u" else (planes != 0).any(axis=1)
    z = np.flatnonzero(busy)
    return (int(z[0]), int(z[-1]) + 1) if z.size else (0, 0)


def mask_voxels(mask: sitk.Image) -> tuple[np.ndarray, list[float]]:
    """(flat indices of the voxels > 0, the distinct values found). Only the slices an OAR
    occupies are searched and only its nonzero voxels sorted: a 200 M voxel mask costs a
    fraction of a second, not a full ``np.unique``."""
    arr = sitk.GetArrayViewFromImage(mask)
    z0, z1 = _occupied_slices(arr)
    plane = arr[0].size
    slab = arr[z0:z1].reshape(-1)
    nonzero = np.flatnonzero(slab)
    values = slab[nonzero]
    distinct = sorted({float(v) for v in np.unique(values)} | ({0.0} if nonzero.size < arr.size else set()))
    return nonzero[values > 0] + z0 * plane, distinct


def _values_finding(file: str, distinct: list[float], out: Findings) -> None:
    if set(distinct) <= {0.0, 1.0}:
        return
    shown = ", ".join(f"{v:g}" for v in distinct[:10]) + (", ..." if len(distinct) > 10 else "")
    out.error(
        file,
        "mask_values",
        f"mask values {shown}, expected only 0 and 1: training reads every value above "
        "0 as the OAR (a soft or label-map export?). Re-export as a binary 0/1 mask",
    )


def _grid_ok(path: Path, ct: ImageInfo, tol_mm: float, out: Findings) -> bool:
    diffs = grid_differences(read_header(path), ct, tol_mm)
    if diffs:
        out.error(
            path.name,
            "grid",
            f"not on the CT grid ({ct.file}): {'; '.join(diffs)}. Training stops at this "
            "file (a mask is never resampled: a shifted mask would teach the contour in the wrong place). "
            "Re-export the mask on the CT's grid",
        )
    return not diffs


def check_mask(
    oar: str, path: Path, ct: ImageInfo, settings: Settings, out: Findings
) -> tuple[np.ndarray | None, float | None]:
    """(voxel indices to paint if the mask is on the grid, volume in mL) of one mask file;
    (None, None) when it cannot be read."""
    try:
        on_grid = _grid_ok(path, ct, settings.grid_tol_mm, out)
        mask = read_image(path)
    except (ImageReadError, InvalidImageError) as exc:
        out.error(path.name, "unreadable", f"{exc}: training stops at this file. Re-export it")
        return None, None
    indices, distinct = mask_voxels(mask)
    _values_finding(path.name, distinct, out)
    if mask.GetPixelID() != sitk.sitkUInt8:
        out.info(
            path.name,
            "mask_values",
            f"stored as {mask.GetPixelIDTypeAsString()} (the download uses "
            "unsigned char): fine for training, 8 bits would be smaller",
        )
    ml = (
        indices.size
        * float(np.prod(mask.GetSpacing()))
        * abs(float(np.linalg.det(np.reshape(mask.GetDirection(), (3, 3)))))
        / 1000.0
    )
    if indices.size == 0:
        out.warning(
            path.name,
            "empty_mask",
            f"the {oar} mask is empty: training learns that this case has no "
            f"{oar} at all. Contour it, or delete the file and set {OAR_DATA_CSV} to 0",
        )
    return (indices if on_grid else None), ml


def overlap_findings(files: CaseFiles, overlaps: Mapping[tuple[str, str], int], voxel_ml: float, out: Findings) -> None:
    for (loser, winner), n in sorted(overlaps.items(), key=lambda kv: (LABEL_IDS[kv[0][0]], LABEL_IDS[kv[0][1]])):
        out.warning(
            files.masks[loser].name,
            "overlap",
            f"{n} voxels ({n * voxel_ml:.3f} mL) are in both {loser} and {winner}: the label map gives "
            f"them to {winner} (label {LABEL_IDS[winner]} > {LABEL_IDS[loser]}: the higher id wins), "
            f"so {loser} loses them. Trim one contour if that is wrong",
        )


def masks_pass(
    files: CaseFiles, ct: ImageInfo, used: Sequence[str], settings: Settings, out: Findings
) -> tuple[np.ndarray, dict[str, float]]:
    """Every mask checked, and the label map training would use painted from the ``used``
    ones that are on the grid; returns it and each readable mask's volume (mL)."""
    painter = LabelPainter(np.zeros(ct.size[::-1], np.uint8))
    volumes: dict[str, float] = {}
    for oar, path in files.masks.items():
        indices, ml = check_mask(oar, path, ct, settings, out)
        if ml is not None:
            volumes[oar] = ml
        if indices is not None and oar in used:
            painter.paint(oar, indices)
    overlap_findings(files, painter.overlaps, float(np.prod(ct.spacing)) / 1000.0, out)
    return painter.labels, volumes
