"""Case preprocessing shared by training and inference (one code path, so they cannot drift).

Forward order (inference undoes 1 and 2 in :mod:`hanseg.postprocess`):

1. crop: body box on the CT, in CT voxel indices (:func:`crop_boxes`), down to the
   plan's ``oar_depth_mm`` below the top of the body (a CT that reaches the thorax is not
   segmented, nor held in memory, below the region where the OARs lie);
2. resample: CT, and the MR through the MR→CT rigid transform, onto one identity-direction
   grid at the plan's spacing covering that box (:func:`geometry.canonical_grid`) — the MR is
   interpolated once, straight from its own grid. The grid's voxel centres lie on a lattice
   anchored at the CT's corner voxel (where MONAI's ``Spacingd`` puts its grid); at inference
   the grid is widened to whole sliding windows of that lattice (:func:`geometry.window_grid`),
   so the result does not depend on where the crop falls;
3. normalise each channel as the plan says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .checks import sanitize_ct, sanitize_mr
from .errors import PlansError
from .geometry import BodyMask, Box, Crop, Grid, body_crops, body_mask, canonical_grid, resample_to_grid, window_grid
from .plans import Normalization, Plans
from .registration import RegistrationResult, fov_height_mm, register_mr_to_ct
from .timing import step

log = logging.getLogger(__name__)

AIR_HU = -1000.0
#: Version of this module's output for the same plan. Bump it with any change that alters the
#: arrays :func:`preprocess_case` returns: training caches are keyed on it and rebuilt.
#: 3: body box from a min-pooled copy; 4: grid on MONAI Spacingd's lattice, CT edges extended.
PREPROCESSING_VERSION = 4


@dataclass(frozen=True)
class PreprocessedCase:
    image: np.ndarray  # (C, Z, Y, X) float32 on ``grid``, channels as in the plan
    grid: Grid  # identity-direction grid at the plan's spacing
    box: Box  # crop box in CT voxel indices (z,y,x)
    registration: RegistrationResult | None
    warnings: tuple[str, ...]  # for results.json error_messages and the log
    body: np.ndarray | None = None  # (Z, Y, X) bool on ``grid``: CT above the plan's body threshold
    #: the body on a pooled copy of the CT (:func:`hanseg.geometry.body_mask`): the coverage check reuses it
    ct_body: BodyMask | None = None


def normalize_ct(hu: np.ndarray, norm: Normalization) -> np.ndarray:
    """Clip to the plan's HU window, then standardise with the training set's mean/std."""
    if norm.clip_low is None or norm.clip_high is None or norm.mean is None or norm.std is None:
        raise PlansError(f"CT normalisation needs clip_low, clip_high, mean and std (scheme {norm.scheme!r})")
    out: np.ndarray = np.clip(hu, norm.clip_low, norm.clip_high)
    out -= norm.mean
    out /= norm.std
    return out


def normalize_zscore(values: np.ndarray, norm: Normalization, mask: np.ndarray) -> np.ndarray:
    """Per-image z-score over ``mask`` (clip to its percentiles first); zero outside it.

    Outside the mask (no MR signal: beyond the MR field of view) the channel is 0, the
    value the network also sees for a missing MR.
    """
    out = np.zeros_like(values)
    if mask.sum() < 100:
        return out
    inside = values[mask]
    lo, hi = np.percentile(inside, norm.percentiles)
    inside = np.clip(inside, lo, hi)
    std = float(inside.std()) or 1.0
    out[mask] = (inside - inside.mean()) / std
    return out


def _mr_channel(
    ct: sitk.Image, mr: sitk.Image | None, box: Box, grid: Grid, plans: Plans, warnings: list[str]
) -> tuple[np.ndarray, RegistrationResult | None]:
    """The normalised MR on ``grid`` or zeros (CT-only fallback), with the registration."""
    zeros = np.zeros(grid.shape, np.float32)
    if mr is None:
        warnings.append("no T1 MR for this case: segmented from the CT alone")
        return zeros, None
    result = register_mr_to_ct(ct, mr, box, plans.body_threshold_hu)
    if not result.ok:
        warnings.append(f"MR not used (CT-only fallback): {result.message}")
        return zeros, result
    values = resample_to_grid(mr, grid, result.transform, default=np.nan)
    inside = np.isfinite(values)
    values[~inside] = 0.0
    norm = plans.channels[plans.channel_names.index("MR_T1")].normalization
    return normalize_zscore(values, norm, inside & (values > 0)), result


#: Registration looks at the top of the CT body as tall as the MR's field of view plus this much:
#: the MR covers the head and upper neck, so shoulders and arms would only cost time (and a
#: CT that reaches the thorax twice the time) without adding anything to align.
HEAD_MARGIN_MM = 50.0


def crop_boxes(
    ct: sitk.Image,
    mr: sitk.Image | None,
    threshold_hu: float,
    margin_mm: float,
    depth_mm: float | None,
    found: BodyMask | None = None,
) -> tuple[Crop, Box]:
    """(the crop: the body down to ``depth_mm`` below its top, the plan's ``oar_depth_mm``, and
    its field of view; the head box registration uses, see :data:`HEAD_MARGIN_MM`), CT voxel
    indices, from one body mask."""
    head = None if mr is None else fov_height_mm(mr) + HEAD_MARGIN_MM
    if head is not None and depth_mm is not None:
        head = min(head, depth_mm)
    crop, head_crop = body_crops(ct, threshold_hu, margin_mm, (depth_mm, head), found=found)
    full = Box.full(tuple(reversed(ct.GetSize())))
    if crop.fov != full:
        log.info(
            "segmented down to %.0f mm below the top of the body (the plan's OAR depth): %.0f %% of the CT",
            depth_mm,
            100 * np.prod(crop.fov.shape) / np.prod(full.shape),
        )
    return crop, head_crop.box


def preprocess_case(ct: sitk.Image, mr: sitk.Image | None, plans: Plans, windows: bool = False) -> PreprocessedCase:
    """CT (+ optional T1 MR) → network input on the canonical grid; see the module docstring.

    ``windows=True`` (inference): the grid spans the plan's sliding windows over the box, so
    the blended prediction on the box equals that of a pass over the whole field of view.
    Training leaves it off: patches are sampled, not tiled.
    """
    with step("crop"):
        ct, warnings = sanitize_ct(ct)
        if mr is not None:
            mr, mr_warnings = sanitize_mr(mr)
            warnings += mr_warnings
        ct_body = body_mask(ct, plans.body_threshold_hu)
        crop, head = crop_boxes(ct, mr, plans.body_threshold_hu, plans.crop_margin_mm, plans.oar_depth_mm, ct_body)
        box = crop.box
        grid = (
            window_grid(ct, box, plans.spacing_xyz_mm, plans.patch_size_zyx, plans.overlap, crop.fov)
            if windows
            else canonical_grid(ct, box, plans.spacing_xyz_mm, crop.fov)
        )
        log.info(
            "crop box %s..%s (z,y,x voxels) → grid %s (z,y,x) at %s mm (x,y,z)",
            box.lo,
            box.hi,
            grid.shape,
            grid.spacing_xyz,
        )
        ct_hu = resample_to_grid(ct, grid, default=AIR_HU, extend_edges=True)
        body = ct_hu > plans.body_threshold_hu  # lets inference skip windows of pure air
        channels = [normalize_ct(ct_hu, plans.channels[0].normalization)]
    registration = None
    if plans.uses_mr:
        with step("registration"):
            mr_arr, registration = _mr_channel(ct, mr, head, grid, plans, warnings)
            channels.append(mr_arr)
    for w in warnings:
        log.warning(w)
    image = np.stack(channels).astype(np.float32, copy=False)
    return PreprocessedCase(image, grid, box, registration, tuple(warnings), body, ct_body)


def labels_to_grid(labels: sitk.Image, case: PreprocessedCase) -> np.ndarray:
    """A CT-grid label map brought onto the case's canonical grid (nearest neighbour), for
    training. Inverse direction of :func:`hanseg.postprocess.probabilities_to_ct`."""
    return resample_to_grid(labels, case.grid, interpolator=sitk.sitkNearestNeighbor).astype(np.uint8)
