"""Rigid MR→CT registration with a sanity check.

Convention: fixed = CT, moving = MR. The result maps **CT physical points to MR physical
points** (mm, LPS), which is what ``sitk.Resample(mr, ct_grid, transform)`` needs to bring
the MR onto the CT grid. The MR in HaN-Seg has its own grid, a smaller field of view and an
unknown rigid offset to the CT, so registration is not optional.

Method: Mattes mutual information (CT and T1 intensities are not linearly related), an Euler
(rotation + translation) transform centred on the CT head, three resolution levels on copies
resampled to ~2 mm (enough for a rigid fit, cheap on a 1024² CT). Several starting
translations are scored and the best one is optimised, because a smaller MR field of view
can put the geometric centres far apart.

Independent of the MR's intensities and of its header: the MR work copy marks the space
outside its field of view as unknown (NaN) instead of 0, so its head outline (Otsu over the
field of view only) and the metric do not depend on an intensity offset or scale (6 of the 42
real HaN-Seg MRs are stored with +32768), and the starting translations come from the head
outlines, not from the origins (real MR and CT headers live in unrelated world coordinates).

The sanity check compares the head outlines: the CT body mask and the MR foreground mask,
both hole-filled per slice, must agree (Dice) inside the MR field of view after the
transform, the MR must cover enough of the part of the CT body it can cover (the top of the
body, as tall as the MR's field of view: a CT that runs down to the thorax does not count
its shoulders), and the rotation must stay plausible. On failure the caller falls back to
CT only and says why.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .geometry import Box, Vec3, canonical_grid, corner_centres, resample_to_grid, vec3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrationSettings:
    work_spacing_mm: float = 2.0
    histogram_bins: int = 32
    sampling_fraction: float = 0.25
    iterations: int = 150
    seed: int = 12345
    min_outline_dice: float = 0.80
    max_rotation_deg: float = 30.0
    min_overlap_fraction: float = 0.2  # of the CT head (see _outline_check) that must lie inside the MR FOV


@dataclass(frozen=True)
class RegistrationResult:
    transform: sitk.Euler3DTransform
    ok: bool
    message: str
    outline_dice: float
    rotation_deg: float
    translation_mm: Vec3


def _work_image(image: sitk.Image, box: Box | None, spacing: float, default: float | None) -> sitk.Image:
    """``image`` (restricted to ``box``) resampled onto an identity grid at ``spacing`` mm.

    ``default`` None: points outside the image take the lowest value inside it, so the
    padding reads as the image's own background, whatever its intensity offset."""
    box = box or Box.full(tuple(reversed(image.GetSize())))
    grid = canonical_grid(image, box, (spacing,) * 3)
    arr = resample_to_grid(image, grid, default=np.nan if default is None else default)
    outside = ~np.isfinite(arr)
    if outside.all():
        arr[:] = 0.0
    elif outside.any():
        arr[outside] = float(np.nanmin(arr))
    out = sitk.GetImageFromArray(arr)
    out.SetOrigin(grid.origin_xyz)
    out.SetSpacing(grid.spacing_xyz)
    return out


def foreground_mask(image: sitk.Image, threshold: float | None = None) -> np.ndarray:
    """Head outline as a boolean z,y,x array: threshold (:func:`tissue_threshold` if None),
    largest component, holes filled slice by slice (sinuses, airway and dark bone are inside
    the head)."""
    arr = sitk.GetArrayFromImage(image)
    if threshold is None:
        threshold = tissue_threshold(arr)
    mask: np.ndarray = ndimage.binary_opening(arr > threshold, iterations=1)
    labelled, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum_labels(mask, labelled, index=np.arange(1, n + 1))
    mask = labelled == 1 + int(np.argmax(sizes))
    for z in range(mask.shape[0]):
        mask[z] = ndimage.binary_fill_holes(mask[z])
    return mask


#: Where air ends and the head begins on a T1, as a fraction of its robust intensity range.
TISSUE_FRACTION = 0.1


def tissue_threshold(arr: np.ndarray) -> float:
    """The intensity between air and tissue of an MR: :data:`TISSUE_FRACTION` of the way from
    its 1st to its 99th percentile, so independent of any offset or scale.

    Why not Otsu: on a T1 the dark classes (air, bone, CSF) and the bright ones (fat, white
    matter) split the histogram best above muscle, so the head outline lost its muscle
    layer and broke open (outline Dice 0.82 on a correctly registered full-size phantom)."""
    lo, hi = np.percentile(arr[np.isfinite(arr)], [1.0, 99.0])
    return float(lo + TISSUE_FRACTION * (hi - lo))


def _rotation_deg(t: sitk.Euler3DTransform) -> float:
    m = np.array(t.GetMatrix()).reshape(3, 3)
    return math.degrees(math.acos(float(np.clip((np.trace(m) - 1) / 2, -1, 1))))


def _centroid_mm(mask: np.ndarray, image: sitk.Image) -> np.ndarray:
    """Physical centroid (x,y,z mm) of a z,y,x mask on an identity-direction ``image``."""
    zyx = np.array(np.nonzero(mask), float).mean(axis=1)
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(zyx[::-1].tolist()))


def _top_slab(mask: np.ndarray, image: sitk.Image, depth_mm: float) -> np.ndarray:
    """The part of ``mask`` within ``depth_mm`` below its most superior voxel (the vertex
    of the skull is in both fields of view even when the MR stops at the neck)."""
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    top = zs.max()
    keep = round(depth_mm / image.GetSpacing()[2])
    out = np.zeros_like(mask)
    out[max(0, top - keep) : top + 1] = mask[max(0, top - keep) : top + 1]
    return out


def _starts(fixed: sitk.Image, moving: sitk.Image, fmask: np.ndarray, mmask: np.ndarray) -> list[np.ndarray]:
    """Candidate starting translations (CT point + t = MR point), in mm."""
    starts = [np.zeros(3)]
    if fmask.any() and mmask.any():
        starts.append(_centroid_mm(mmask, moving) - _centroid_mm(fmask, fixed))
        starts.append(
            _centroid_mm(_top_slab(mmask, moving, 80), moving) - _centroid_mm(_top_slab(fmask, fixed, 80), fixed)
        )
    return starts


def _mask_image(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.CopyInformation(like)
    return img


def _method(settings: RegistrationSettings, fixed_mask: sitk.Image) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(settings.sampling_fraction, settings.seed)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0,
        minStep=1e-3,
        numberOfIterations=settings.iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def field_of_view(image: sitk.Image) -> sitk.Image:
    """A uint8 image of ones on ``image``'s own grid: its field of view, which for an oblique
    MR is a rotated box inside the axis-aligned work copy."""
    fov: sitk.Image = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    fov.CopyInformation(image)
    return fov


def fov_height_mm(image: sitk.Image) -> float:
    """How far ``image``'s field of view reaches along the patient's long (z) axis, in mm."""
    corners = corner_centres(image)
    voxel_z = np.abs(np.asarray(image.GetDirection()).reshape(3, 3)[2]) @ np.asarray(image.GetSpacing())
    return float(np.ptp(corners[:, 2]) + voxel_z)


def _outline_check(
    fixed: sitk.Image,
    mr: sitk.Image,
    moving: sitk.Image,
    fmask: np.ndarray,
    mmask: np.ndarray,
    transform: sitk.Transform,
) -> tuple[float, float]:
    """(Dice of the head outlines inside the MR field of view, fraction of the CT head that
    the MR field of view covers), both on the fixed work grid. The CT head is the top of the
    CT body as tall as the MR's field of view (:func:`fov_height_mm`): what an MR of the head
    and neck can cover, however far below the neck the CT reaches."""
    ref = _mask_image(fmask, fixed)
    fov = field_of_view(mr)
    fov_on_ct = sitk.GetArrayFromImage(sitk.Resample(fov, ref, transform, sitk.sitkNearestNeighbor, 0)) > 0
    mr_on_ct = (
        sitk.GetArrayFromImage(sitk.Resample(_mask_image(mmask, moving), ref, transform, sitk.sitkNearestNeighbor, 0))
        > 0
    )
    a, b = fmask & fov_on_ct, mr_on_ct & fov_on_ct
    dice = 2 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))
    head = _top_slab(fmask, fixed, fov_height_mm(mr)) if fmask.any() else fmask
    coverage = float((head & fov_on_ct).sum()) / max(1.0, float(head.sum()))
    return dice, coverage


def register_mr_to_ct(
    ct: sitk.Image,
    mr: sitk.Image,
    ct_box: Box | None = None,
    body_threshold_hu: float = -500.0,
    settings: RegistrationSettings = RegistrationSettings(),
) -> RegistrationResult:
    """Rigidly register ``mr`` to ``ct``; see the module docstring for method and check."""
    fixed = _work_image(ct, ct_box, settings.work_spacing_mm, default=-1000.0)
    moving = _work_image(mr, None, settings.work_spacing_mm, default=None)
    fmask = foreground_mask(fixed, body_threshold_hu)
    mmask = foreground_mask(moving)
    transform = sitk.Euler3DTransform()
    if fmask.any():
        transform.SetCenter(_centroid_mm(_top_slab(fmask, fixed, 150), fixed).tolist())
    metric_mask = _mask_image(ndimage.binary_dilation(fmask, iterations=5), fixed)
    reg = _method(settings, metric_mask)
    scores = []
    for start in _starts(fixed, moving, fmask, mmask):
        transform.SetTranslation(start.tolist())
        reg.SetInitialTransform(transform, inPlace=False)
        try:
            scores.append((reg.MetricEvaluate(fixed, moving), start))
        except RuntimeError:  # ITK refuses when too few samples overlap: not a candidate
            continue
    if not scores:
        return _failed(transform, "the MR and the CT do not overlap at any starting position")
    transform.SetTranslation(min(scores, key=lambda s: s[0])[1].tolist())
    reg.SetInitialTransform(transform, inPlace=True)
    try:
        reg.Execute(fixed, moving)
    except RuntimeError as exc:
        return _failed(transform, f"the optimiser stopped: {str(exc).strip().splitlines()[-1]}")
    return _judge(transform, *_outline_check(fixed, mr, moving, fmask, mmask, transform), settings)


def _failed(transform: sitk.Euler3DTransform, why: str) -> RegistrationResult:
    log.warning("registration failed: %s", why)
    return RegistrationResult(
        transform, False, f"registration failed: {why}", 0.0, _rotation_deg(transform), vec3(transform.GetTranslation())
    )


def _judge(
    transform: sitk.Euler3DTransform, dice: float, coverage: float, settings: RegistrationSettings
) -> RegistrationResult:
    rotation = _rotation_deg(transform)
    translation = vec3(transform.GetTranslation())
    problems = []
    if coverage < settings.min_overlap_fraction:
        problems.append(
            f"the MR covers only {coverage:.0%} of the CT head after registration "
            "(MR and CT do not overlap: another patient or another body part?)"
        )
    if dice < settings.min_outline_dice:
        problems.append(
            f"head outlines agree poorly after registration (Dice {dice:.2f} < {settings.min_outline_dice:.2f})"
        )
    if rotation > settings.max_rotation_deg:
        problems.append(f"implausible rotation {rotation:.1f}°")
    ok = not problems
    message = (
        (
            "MR registered to CT: rotation {:.1f}°, translation ({:.1f}, {:.1f}, {:.1f}) mm, outline Dice {:.2f}".format(
                rotation, *translation, dice
            )
        )
        if ok
        else "; ".join(problems)
    )
    (log.info if ok else log.warning)("registration: %s", message)
    return RegistrationResult(transform, ok, message, dice, rotation, translation)
