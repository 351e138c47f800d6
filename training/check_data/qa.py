"""The QA picture of one case: the label map training would use over the CT, cut to the OARs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hanseg.labels import OAR_NAMES

from .rules import Findings

#: Context kept around the OARs in the QA picture, in mm.
QA_MARGIN_MM = 40.0


def _crop_to_labels(ct_hu: sitk.Image, labels: np.ndarray) -> tuple[sitk.Image, np.ndarray]:
    """CT and label map cut to the OARs plus :data:`QA_MARGIN_MM`: the picture shows only that
    region, and resampling a whole 1024x1024x300 CT for it costs seconds and gigabytes."""
    axes = [np.flatnonzero(labels.any(axis=tuple(a for a in range(3) if a != k))) for k in range(3)]
    if any(a.size == 0 for a in axes):
        return ct_hu, labels
    margin = [int(np.ceil(QA_MARGIN_MM / s)) for s in ct_hu.GetSpacing()[::-1]]
    lo = [max(0, int(a[0]) - m) for a, m in zip(axes, margin)]
    hi = [min(n, int(a[-1]) + 1 + m) for a, m, n in zip(axes, margin, labels.shape)]
    cropped = ct_hu[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]]  # SimpleITK slices x, y, z; keeps the geometry
    return cropped, labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]


def write_overlay(ct_hu: sitk.Image, labels: np.ndarray, qa_dir: Path, case_id: str, out: Findings) -> None:
    from evaluation.qa import overlay_png  # Pillow and the drawing: only when a picture is drawn

    ct_crop, labels_crop = _crop_to_labels(ct_hu, labels)
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels_crop))
    image.CopyInformation(ct_crop)
    present = int(np.count_nonzero(np.bincount(labels_crop.reshape(-1), minlength=len(OAR_NAMES) + 1)[1:]))
    qa_dir.mkdir(parents=True, exist_ok=True)
    path = overlay_png(ct_crop, image, qa_dir / f"{case_id}.png", f"{case_id}: {present} OARs as training sees them")
    out.info(path.name, "qa", f"QA overlay written to {path}")
