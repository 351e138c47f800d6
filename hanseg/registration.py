"""Rigid MR→CT registration with a sanity check.

Convention: fixed = CT, moving = MR. The result maps **CT physical points to MR physical
points** (mm, LPS), which is what ``sitk.Resample(mr, ct_grid, transform)`` needs to bring
the MR onto the CT grid. The MR in HaN-Seg has its own grid, a smaller field of view and an
unknown rigid offset to the CT, so registration is not optional.

Method: Mattes mutual information (CT and T1 intensities are not linearly related), an Euler
(rotation + translation) transform centred on the CT head, three resolution levels (8, 4 and
2 mm) on work copies resampled to 2 mm (enough for a rigid fit, cheap on a 1024² CT). Several
starting translations are scored and the best one is optimised, because a smaller MR field of
view can put the geometric centres far apart.

Schedule (:class:`RegistrationSettings`; measured with ``python -m benchmarks.registration``
against :data:`PREVIOUS_SCHEDULE`, same run). Most of the previous schedule's time was set-up,
not optimisation: ITK's pyramid smooths the full work images and rebuilds a gradient image of
the whole moving image at every level and for every scored start (~0.45 s each on a full-size
case), and the finest level drew 25 % of the voxels per iteration. Now each level is its own
run on copies binned 4×, 2× and 1× (averaging 4³ voxels is the anti-aliasing; no smoothing),
the moving image's gradient is taken at the sample points only, the levels draw 50 %, 10 %
and 3 % of their voxels (a rigid fit has 6 parameters; 3 % of a full-size head box at 2 mm is
still ~25 000 points in the head), each level starts with a step that fits what is left to do
(2, 1, 0.5 mm), and the starts are scored on 6 mm copies. Measured on unseen phantoms (2 CPU
cores, both schedules interleaved in one process, median of 3): full-size cases (CT
1024×1024×273 and ×327, the head box of preprocessing) 3.9 and 4.5 s → 0.71 and 0.95 s, six
small ones 2.8–3.5 s → 0.58–0.87 s (×5); the target registration error over the OAR voxels
stays sub-voxel (worst 0.54 mm against 0.33 mm on the small cases, 0.19 against 0.18 mm
full-size; the tests ask < 2 mm). Dropping the 2 mm level (8 and 4 mm only) raised the error
to 0.4–1.2 mm in trials; more samples at 2 mm (5 % or 25 %) did not lower it.

The fewer samples make the end point more sensitive to the order in which ITK's threads add
up the metric: the same input came out up to 1e-3 mm apart from run to run (1e-13 to 1e-8
before). Halving the step at each reversal (relaxation 0.5, was 0.6) brought that down to
~1e-6 mm on the cases tried, and the result is rounded to :data:`ROUND_TO` (at most ~2 µm
off), so that the same input gives the same MR channel bit for bit (see :data:`ROUND_TO`).

Independent of the MR's intensities and of its header: the MR work copy marks the space
outside its field of view as unknown (NaN) instead of 0, so its head outline
(:func:`tissue_threshold` over the field of view only) and the metric do not depend on an
intensity offset or scale (6 of the 42 real HaN-Seg MRs are stored with +32768), and the
starting translations come from the head outlines, not from the origins (real MR and CT
headers live in unrelated world coordinates).

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
    """The optimisation schedule (the module docstring says why these values) and the sanity
    check. Per-level tuples run coarse to fine; ``shrink_factors`` count work voxels."""

    work_spacing_mm: float = 2.0
    histogram_bins: int = 32
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (0.0, 0.0, 0.0)  # voxels of the level's image
    sampling_fractions: tuple[float, ...] = (0.5, 0.1, 0.03)
    learning_rates: tuple[float, ...] = (2.0, 1.0, 0.5)  # first step of each level (scaled mm)
    iterations: int = 150  # per level
    min_step: float = 1e-3
    relaxation: float = 0.5  # step × this at each reversal
    binned_levels: bool = True  # each level its own run on binned copies; False: ITK's pyramid
    gradient_filter: bool = False  # ITK's moving-image gradient image (rebuilt at every level and start)
    start_spacing_mm: float | None = 6.0  # starts scored on copies binned to this spacing; None: the work images
    start_sampling_fraction: float = 0.25
    seed: int = 12345
    min_outline_dice: float = 0.80
    max_rotation_deg: float = 30.0
    min_overlap_fraction: float = 0.2  # of the CT head (see _outline_check) that must lie inside the MR FOV

    def __post_init__(self) -> None:
        n = len(self.shrink_factors)
        if not (len(self.smoothing_sigmas) == len(self.sampling_fractions) == len(self.learning_rates) == n):
            raise ValueError(
                "shrink_factors, smoothing_sigmas, sampling_fractions and learning_rates need one value per level"
            )
        if not self.binned_levels and len(set(self.learning_rates)) > 1:
            raise ValueError("ITK's pyramid (binned_levels=False) takes one learning rate for all levels")


#: The schedule before the binned one (kept for ``benchmarks/registration.py``): ITK's pyramid,
#: smoothing and differentiating the full 2 mm work images at every level, 25 % sampling at
#: every level, and the starts scored on the full work images (as before, but for the final
#: rounding to :data:`ROUND_TO`).
PREVIOUS_SCHEDULE = RegistrationSettings(
    smoothing_sigmas=(2.0, 1.0, 0.0),
    sampling_fractions=(0.25, 0.25, 0.25),
    learning_rates=(2.0, 2.0, 2.0),
    relaxation=0.6,
    binned_levels=False,
    gradient_filter=True,
    start_spacing_mm=None,
)


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
    sizes = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
    return fill_holes_per_slice(labelled == 1 + int(np.argmax(sizes)))


#: In-plane 4-connectivity, nothing across slices: the background of each z slice on its own.
_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes`` on every z slice of a z,y,x mask, in one labelling: the
    background that is not 4-connected to its slice's border is a hole."""
    background, _ = ndimage.label(~mask, structure=_IN_PLANE)
    border = np.unique(
        np.concatenate(
            [
                background[:, 0].ravel(),
                background[:, -1].ravel(),
                background[:, :, 0].ravel(),
                background[:, :, -1].ravel(),
            ]
        )
    )
    return mask | ~np.isin(background, border)


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


def _metric(settings: RegistrationSettings, fixed_mask: sitk.Image) -> sitk.ImageRegistrationMethod:
    """A registration method with the metric, its sampling seed, mask and interpolator set."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricFixedMask(fixed_mask)
    if not settings.gradient_filter:
        reg.MetricUseMovingImageGradientFilterOff()
    reg.SetInterpolator(sitk.sitkLinear)
    return reg


def _method(
    settings: RegistrationSettings,
    fixed_mask: sitk.Image,
    shrink_factors: tuple[int, ...],
    smoothing_sigmas: tuple[float, ...],
    sampling_fractions: tuple[float, ...],
    learning_rate: float,
) -> sitk.ImageRegistrationMethod:
    reg = _metric(settings, fixed_mask)
    reg.SetMetricSamplingPercentagePerLevel(list(sampling_fractions), settings.seed)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=learning_rate,
        minStep=settings.min_step,
        numberOfIterations=settings.iterations,
        relaxationFactor=settings.relaxation,
        gradientMagnitudeTolerance=1e-6,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink_factors))
    reg.SetSmoothingSigmasPerLevel(list(smoothing_sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def _binned(image: sitk.Image, factor: int) -> sitk.Image:
    """``image`` with ``factor``³ voxels averaged into one (a mask: any of them set); an axis
    shorter than ``factor`` is binned into one voxel."""
    if factor == 1:
        return image
    factors = [min(factor, n) for n in image.GetSize()]
    if image.GetPixelID() == sitk.sitkUInt8:
        any_set = sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors) > 0
        mask: sitk.Image = sitk.Cast(any_set, sitk.sitkUInt8)
        return mask
    averaged: sitk.Image = sitk.BinShrink(image, factors)
    return averaged


def _optimise(
    transform: sitk.Euler3DTransform,
    fixed: sitk.Image,
    moving: sitk.Image,
    metric_mask: sitk.Image,
    settings: RegistrationSettings,
) -> None:
    """Optimise ``transform`` in place over the levels of ``settings``: with
    ``binned_levels``, one single-level run per level on binned copies (no level touches the
    full work images, and each level starts with its own step); else ITK's pyramid."""
    if not settings.binned_levels:
        reg = _method(
            settings,
            metric_mask,
            settings.shrink_factors,
            settings.smoothing_sigmas,
            settings.sampling_fractions,
            settings.learning_rates[0],
        )
        reg.SetInitialTransform(transform, inPlace=True)
        reg.Execute(fixed, moving)
        return
    for shrink, sigma, fraction, rate in zip(
        settings.shrink_factors, settings.smoothing_sigmas, settings.sampling_fractions, settings.learning_rates
    ):
        reg = _method(settings, _binned(metric_mask, shrink), (1,), (sigma,), (fraction,), rate)
        reg.SetInitialTransform(transform, inPlace=True)
        reg.Execute(_binned(fixed, shrink), _binned(moving, shrink))


def _score_starts(
    transform: sitk.Euler3DTransform,
    fixed: sitk.Image,
    moving: sitk.Image,
    metric_mask: sitk.Image,
    starts: list[np.ndarray],
    settings: RegistrationSettings,
) -> list[tuple[float, np.ndarray]]:
    """(Mattes MI, start) of each starting translation that ITK can score, on the work images
    or on copies binned to ``settings.start_spacing_mm``."""
    factor = 1
    if settings.start_spacing_mm is not None:
        factor = max(1, round(settings.start_spacing_mm / settings.work_spacing_mm))
    fixed, moving, metric_mask = _binned(fixed, factor), _binned(moving, factor), _binned(metric_mask, factor)
    reg = _metric(settings, metric_mask)
    reg.SetMetricSamplingPercentage(settings.start_sampling_fraction, settings.seed)
    scores = []
    for start in starts:
        candidate = sitk.Euler3DTransform(transform)
        candidate.SetTranslation(start.tolist())
        reg.SetInitialTransform(candidate, inPlace=False)
        try:
            scores.append((reg.MetricEvaluate(fixed, moving), start))
        except RuntimeError:  # ITK refuses when too few samples overlap: not a candidate
            continue
    return scores


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


#: The grid the result is rounded to: radians, then mm (1e-5 rad moves a point 150 mm away by
#: 1.5 µm). ITK adds up the metric's threads in whatever order they finish, so the same input
#: comes out differing by ~1e-6 mm from run to run; rounded, it gives the same MR
#: channel bit for bit (tests/smoke/hanseg/test_real_data_quirks.py asks for it) unless a
#: parameter lies within that noise of a rounding boundary.
ROUND_TO = (1e-5, 1e-3)


def _round(transform: sitk.Euler3DTransform) -> None:
    angles, shift = ROUND_TO
    params = transform.GetParameters()
    transform.SetParameters(
        [round(v / angles) * angles for v in params[:3]] + [round(v / shift) * shift for v in params[3:]]
    )


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
    scores = _score_starts(transform, fixed, moving, metric_mask, _starts(fixed, moving, fmask, mmask), settings)
    if not scores:
        return _failed(transform, "the MR and the CT do not overlap at any starting position")
    transform.SetTranslation(min(scores, key=lambda s: s[0])[1].tolist())
    try:
        _optimise(transform, fixed, moving, metric_mask, settings)
    except RuntimeError as exc:
        return _failed(transform, f"the optimiser stopped: {str(exc).strip().splitlines()[-1]}")
    _round(transform)
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
