"""Class probabilities on the canonical grid → one uint8 label map on the CT's own grid.

Inverse of preprocessing steps 1–2 (:mod:`hanseg.preprocess`): resample back (linear, in
physical space) onto the CT sub-grid of the crop box, then uncrop into the full CT.

Memory: a 31-channel float volume on a 1024² CT grid would need tens of GB, so it is never
built. Classes are resampled one at a time into a running (best probability, best label)
pair. A class whose probability stays below 1/C everywhere on the canonical grid is skipped:
linear interpolation is a convex combination, so on the CT grid the probabilities still sum
to 1, the winner has at least 1/C, and that class can never win.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from .geometry import Box, Grid, resample_from_grid, subgrid, uncrop

log = logging.getLogger(__name__)


def probabilities_to_ct(probs: np.ndarray, grid: Grid, ct: sitk.Image, box: Box) -> np.ndarray:
    """Argmax label map (uint8, z,y,x, full CT shape) of ``probs`` (C,Z,Y,X on ``grid``)."""
    n_classes = probs.shape[0]
    target = subgrid(ct, box)
    best_p = resample_from_grid(probs[0], grid, target, default=1.0)  # background everywhere else
    best_label = np.zeros(best_p.shape, np.uint8)
    threshold = 1.0 / n_classes
    skipped = 0
    for c in range(1, n_classes):
        if float(probs[c].max()) < threshold:
            skipped += 1
            continue
        p = resample_from_grid(probs[c], grid, target, default=0.0)
        wins = p > best_p
        best_p[wins] = p[wins]
        best_label[wins] = c
    log.debug("resampled %d classes back to the CT grid (%d could not win)", n_classes - 1 - skipped, skipped)
    return uncrop(best_label, box, tuple(reversed(ct.GetSize())))  # type: ignore[arg-type]
