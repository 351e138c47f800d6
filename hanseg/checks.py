"""Input sanity checks that repair what can be repaired, and say so.

Each function returns the (possibly fixed) image and the warnings a user must read; the
caller logs them and they end up in ``results.json`` ``error_messages``. Used by ``preprocess_case``, so
training and inference see the same repaired data.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

#: Offset of CT values stored without the DICOM rescale (HU + 1024), the common case.
RAW_CT_OFFSET = 1024.0
_FLOAT_TYPES = (sitk.sitkFloat32, sitk.sitkFloat64)


def _replace_non_finite(image: sitk.Image, value: float, what: str) -> tuple[sitk.Image, list[str]]:
    if image.GetPixelID() not in _FLOAT_TYPES:
        return image, []  # integer voxels cannot be NaN or inf
    arr = sitk.GetArrayViewFromImage(image)
    bad = ~np.isfinite(arr)
    n = int(bad.sum())
    if n == 0:
        return image, []
    fixed = np.where(bad, value, arr).astype(arr.dtype)
    out = sitk.GetImageFromArray(fixed)
    out.CopyInformation(image)
    return out, [f"{what}: {n} NaN/inf voxels ({n / arr.size:.2%}) replaced by {value:g}"]


#: Largest |DᵀD − I| accepted silently: rounding in DICOM-to-file converters stays far below.
ORTHONORMAL_TOLERANCE = 1e-3


def check_direction(image: sitk.Image, what: str) -> list[str]:
    """Warn about a non-orthonormal direction matrix.

    A sheared grid (e.g. a CT reconstructed with a tilted gantry) is still a valid affine
    index→mm map: every step here works in physical space through ITK, which inverts the full
    matrix, and the label map keeps the CT's header, so it is processed, with a warning.
    (A singular matrix never gets here: ITK refuses it when the file is read, see
    :func:`hanseg.io.read_image`.)
    """
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)
    deviation = float(np.abs(d.T @ d - np.eye(3)).max())
    if deviation <= ORTHONORMAL_TOLERANCE:
        return []
    return [
        f"{what}: direction matrix is not orthonormal (deviation {deviation:.3f}; a sheared grid, "
        "e.g. a tilted gantry): segmented in physical space, the label map keeps the CT's grid"
    ]


def sanitize_ct(ct: sitk.Image) -> tuple[sitk.Image, list[str]]:
    """Replace NaN/inf by air; shift a CT stored as HU+1024 (no value below 0) back to HU.

    A head CT in Hounsfield units always holds air (−1000) or at least fat (about −100), so
    a minimum ≥ 0 means the DICOM rescale was not applied.
    """
    warnings = check_direction(ct, "CT")
    ct, non_finite = _replace_non_finite(ct, -1000.0, "CT")
    warnings += non_finite
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(ct)
    if stats.GetMinimum() >= 0:
        warnings.append(
            f"CT values {stats.GetMinimum():g}..{stats.GetMaximum():g} are not Hounsfield units "
            f"(nothing below 0): assumed raw scanner values and subtracted {RAW_CT_OFFSET:g}"
        )
        ct = _shift(ct, -int(RAW_CT_OFFSET), stats.GetMaximum())
    return ct, warnings


def _shift(image: sitk.Image, offset: int, maximum: float) -> sitk.Image:
    """``image + offset`` for an image with no value below 0, kept in 16-bit integers when its
    values fit them (a full-size CT as float32 would cost 1.4 GB instead of 0.7)."""
    shifted: sitk.Image
    if image.GetPixelID() not in _FLOAT_TYPES and maximum <= 32767:
        shifted = sitk.Cast(image, sitk.sitkInt16) + offset
    else:
        shifted = sitk.Cast(image, sitk.sitkFloat32) + float(offset)
    return shifted


#: Offset of an MR stored as unsigned 16-bit with the signed range shifted up (6 of the 42
#: HaN-Seg MRs: case 01 holds 32768..35447 where its true values are 0..2679).
UINT16_MR_OFFSET = 32768.0
_INTEGER_TYPES = (sitk.sitkUInt16, sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64)


def mr_intensity_offset(mr: sitk.Image) -> float:
    """The +32768 offset of an MR stored as unsigned 16-bit from signed values, or 0.

    Such an MR has no value below 32768: a real T1 always holds background near 0, so a
    minimum of 32768 or more in an integer image means the offset was never removed. It
    matters beyond the looks: a background that is exactly 0 would otherwise be counted as
    signal when the MR channel is normalised."""
    if mr.GetPixelID() not in _INTEGER_TYPES:
        return 0.0
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(mr)
    return UINT16_MR_OFFSET if stats.GetMinimum() >= UINT16_MR_OFFSET else 0.0


def sanitize_mr(mr: sitk.Image) -> tuple[sitk.Image, list[str]]:
    """Replace NaN/inf in the MR by 0 (no signal); remove a +32768 storage offset; check its
    direction matrix like the CT's."""
    warnings = check_direction(mr, "MR")
    mr, non_finite = _replace_non_finite(mr, 0.0, "MR")
    offset = mr_intensity_offset(mr)
    if offset:
        warnings.append(
            f"MR values start at {offset:g} (unsigned 16-bit storage with a +{offset:g} offset): subtracted {offset:g}"
        )
        mr = sitk.Cast(mr, sitk.sitkFloat32) - offset
    return mr, warnings + non_finite
