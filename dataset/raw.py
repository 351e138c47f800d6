"""The HaN-Seg raw dataset layout, read for training and evaluation.

``<root>/case_XX/case_XX_IMG_CT.nrrd``, ``case_XX_IMG_MR_T1.nrrd`` (optional here) and one
binary ``case_XX_OAR_<name>.seg.nrrd`` per annotated OAR, on the CT grid. An OAR without a
mask file is *not annotated* for that case (not "absent from the body").
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

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawCase:
    case_id: str
    ct: Path
    mr: Path | None
    masks: dict[str, Path]   # OAR name -> mask file, annotated OARs only

    @property
    def present(self) -> np.ndarray:
        """(31,) bool: background and every annotated OAR."""
        out = np.zeros(NUM_CLASSES, bool)
        out[0] = True
        for name in self.masks:
            out[LABEL_IDS[name]] = True
        return out


def find_raw_cases(root: Path) -> list[RawCase]:
    """Every ``case_*`` folder under ``root`` that has a CT, sorted by case id."""
    root = Path(root)
    cases = []
    for folder in sorted(p for p in root.glob("case_*") if p.is_dir()):
        cid = folder.name
        ct = folder / f"{cid}_IMG_CT.nrrd"
        if not ct.is_file():
            log.warning("%s has no %s: skipped", folder, ct.name)
            continue
        mr = folder / f"{cid}_IMG_MR_T1.nrrd"
        masks = {n: folder / oar_file_name(cid, n) for n in OAR_NAMES
                 if (folder / oar_file_name(cid, n)).is_file()}
        cases.append(RawCase(cid, ct, mr if mr.is_file() else None, masks))
    if not cases:
        raise InputLayoutError(f"no case_XX/case_XX_IMG_CT.nrrd found under {root}")
    return cases


def label_map(case: RawCase, ct: sitk.Image) -> np.ndarray:
    """The case's OAR masks merged into one uint8 z,y,x label map on the CT grid.

    Masks are painted in id order, so where two masks overlap the higher id wins (the
    challenge's label map must be one label per voxel).
    """
    labels = np.zeros(tuple(reversed(ct.GetSize())), np.uint8)
    for name in OAR_NAMES:
        if name not in case.masks:
            continue
        mask = read_image(case.masks[name])
        if not same_grid(mask, ct, atol=1e-3):
            raise InvalidImageError(f"{case.masks[name].name} is not on the grid of {case.ct.name}")
        labels[sitk.GetArrayViewFromImage(mask) > 0] = LABEL_IDS[name]
    return labels
