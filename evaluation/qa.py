"""QA overlay pictures: CT slices with one coloured contour per OAR.

Three views through the centre of the segmented region (axial, coronal, sagittal), drawn in
physical proportions (slice thickness respected), anterior up in axial, superior up in the
others. For a person to check a result at a glance; not used by the container.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hanseg.geometry import Box, canonical_grid, resample_to_grid
from hanseg.labels import LABEL_NAMES, NUM_CLASSES


def _canonical(ct: sitk.Image, labels: sitk.Image, spacing: float = 1.0) -> tuple[np.ndarray, np.ndarray, tuple]:
    """CT and labels on an identity-direction grid (so views are the same way round for any
    CT direction), at ``spacing`` mm in-plane and the CT's slice thickness."""
    box = Box.full(tuple(reversed(ct.GetSize())))
    grid = canonical_grid(ct, box, (spacing, spacing, max(spacing, min(ct.GetSpacing()[2], 3.0))))
    hu = resample_to_grid(ct, grid, default=-1000)
    lab = resample_to_grid(labels, grid, interpolator=sitk.sitkNearestNeighbor).astype(np.uint8)
    return hu, lab, grid.spacing_xyz


def overlay_png(ct: sitk.Image, labels: sitk.Image, path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hu, lab, (sx, sy, sz) = _canonical(ct, labels)
    fg = np.argwhere(lab > 0)
    z, y, x = fg.mean(0).astype(int) if len(fg) else np.array(lab.shape) // 2
    views = [
        ("axial", hu[z], lab[z], sy / sx),
        ("coronal", hu[:, y][::-1], lab[:, y][::-1], sz / sx),
        ("sagittal", hu[:, :, x][::-1], lab[:, :, x][::-1], sz / sy),
    ]
    cmap = plt.get_cmap("gist_rainbow", NUM_CLASSES)
    fig, axes = plt.subplots(1, 3, figsize=(15, 6))
    for ax, (name, img, seg, aspect) in zip(axes, views):
        ax.imshow(img, cmap="gray", vmin=-250, vmax=350, aspect=aspect, interpolation="nearest")
        for c in np.unique(seg)[1:]:
            ax.contour(seg == c, levels=[0.5], colors=[cmap(int(c))], linewidths=1.0)
        ax.set_title(name)
        ax.axis("off")
    handles = [plt.Line2D([], [], color=cmap(c), label=f"{c} {LABEL_NAMES[c]}") for c in np.unique(lab)[1:]]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return Path(path)
