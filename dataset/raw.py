"""The HaN-Seg raw dataset layout, read for training and evaluation.

``<root>/case_XX/case_XX_IMG_CT.nrrd``, ``case_XX_IMG_MR_T1.nrrd`` (optional here) and one
binary ``case_XX_OAR_<name>.seg.nrrd`` per annotated OAR, on the CT grid, and
``<root>/OAR_data.csv`` (:mod:`dataset.oar_data`). An OAR without a mask file is *not
annotated* for that case (not "absent from the body"). An OAR whose ``OAR_data.csv`` value is
below ``min_reliability`` (default 1: the real download marks case_19's brainstem, optic nerves
and pituitary 0.5) is treated the same way: its mask is left out, so training's marginal loss
never teaches its voxels as background nor as the OAR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hanseg.errors import InputLayoutError, InvalidImageError
from hanseg.io import read_image, same_grid
from hanseg.labels import LABEL_IDS, NUM_CLASSES, OAR_NAMES, oar_file_name

from .oar_data import FILE_NAME as OAR_DATA_CSV
from .oar_data import OarTable, read_oar_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawCase:
    case_id: str
    ct: Path
    mr: Path | None
    masks: dict[str, Path]  # OAR name -> mask file, annotated (and reliable enough) OARs only
    unreliable: tuple[str, ...] = ()  # mask files left out: OAR_data.csv below min_reliability

    @property
    def present(self) -> np.ndarray:
        """(31,) bool: background and every annotated OAR."""
        out = np.zeros(NUM_CLASSES, bool)
        out[0] = True
        for name in self.masks:
            out[LABEL_IDS[name]] = True
        return out


def read_table(root: Path) -> OarTable:
    """``root/OAR_data.csv`` by case and OAR name, or empty when the dataset has none."""
    path = Path(root) / OAR_DATA_CSV
    return read_oar_table(path) if path.is_file() else {}


def _case(folder: Path, row: dict[str, float] | None, min_reliability: float) -> RawCase | None:
    cid = folder.name
    ct = folder / f"{cid}_IMG_CT.nrrd"
    if not ct.is_file():
        log.warning("%s has no %s: skipped", folder, ct.name)
        return None
    known = {oar_file_name(cid, n) for n in OAR_NAMES}
    strange = sorted(p.name for p in folder.glob(f"{cid}_OAR_*.seg.nrrd") if p.name not in known)
    if strange:
        log.warning("%s: mask files with no known OAR name are ignored: %s", cid, ", ".join(strange))
    files = {n: folder / oar_file_name(cid, n) for n in OAR_NAMES if (folder / oar_file_name(cid, n)).is_file()}
    unreliable = tuple(n for n in files if row is not None and row.get(n, 1.0) < min_reliability)
    if unreliable:
        log.info(
            "%s: %s left out (OAR_data.csv below %g: not reliably delineated)",
            cid,
            ", ".join(unreliable),
            min_reliability,
        )
    mr = folder / f"{cid}_IMG_MR_T1.nrrd"
    masks = {n: p for n, p in files.items() if n not in unreliable}
    return RawCase(cid, ct, mr if mr.is_file() else None, masks, unreliable)


def find_raw_cases(root: Path, min_reliability: float = 1.0) -> list[RawCase]:
    """Every ``case_*`` folder under ``root`` that has a CT, sorted by case id; OARs whose
    ``OAR_data.csv`` value is below ``min_reliability`` are left out (0 keeps every mask)."""
    root = Path(root)
    table = read_table(root)
    cases = [
        c
        for c in (
            _case(f, table.get(f.name), min_reliability) for f in sorted(p for p in root.glob("case_*") if p.is_dir())
        )
        if c is not None
    ]
    if not cases:
        raise InputLayoutError(f"no case_XX/case_XX_IMG_CT.nrrd found under {root}")
    return cases


def paint(labels: np.ndarray, voxels: np.ndarray, oar: str) -> dict[str, int]:
    """Paint ``oar``'s label id at ``voxels`` (flat indices into ``labels``, z,y,x uint8), in
    place; returns how many voxels each OAR painted before lost to it. Masks are painted in label
    order, so where two overlap the later, higher id wins: the challenge's label map holds one
    label per voxel. The one place that rule lives (training and the dataset check use it)."""
    flat = labels.reshape(-1)
    before = np.bincount(flat[voxels], minlength=NUM_CLASSES)
    flat[voxels] = LABEL_IDS[oar]
    return {OAR_NAMES[i - 1]: int(before[i]) for i in np.flatnonzero(before[1:]) + 1}


def label_map(case: RawCase, ct: sitk.Image) -> np.ndarray:
    """The case's OAR masks merged into one uint8 z,y,x label map on the CT grid (:func:`paint`)."""
    labels = np.zeros(tuple(reversed(ct.GetSize())), np.uint8)
    for name in OAR_NAMES:
        if name not in case.masks:
            continue
        mask = read_image(case.masks[name])
        if not same_grid(mask, ct, atol=1e-3):
            raise InvalidImageError(f"{case.masks[name].name} is not on the grid of {case.ct.name}")
        paint(labels, np.flatnonzero(sitk.GetArrayViewFromImage(mask) > 0), name)
    return labels
