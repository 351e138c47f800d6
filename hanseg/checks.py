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


def sanitize_ct(ct: sitk.Image) -> tuple[sitk.Image, list[str]]:
    """Replace NaN/inf by air; shift a CT stored as HU+1024 (no value below 0) back to HU.

    A head CT in Hounsfield units always holds air (−1000) or at least fat (about −100), so
    a minimum ≥ 0 means the DICOM rescale was not applied.
    """
    ct, warnings = _replace_non_finite(ct, -1000.0, "CT")
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(ct)
    if stats.GetMinimum() >= 0:
        warnings.append(f"CT values {stats.GetMinimum():g}..{stats.GetMaximum():g} are not Hounsfield units "
                        f"(nothing below 0): assumed raw scanner values and subtracted {RAW_CT_OFFSET:g}")
        ct = sitk.Cast(ct, sitk.sitkFloat32) - RAW_CT_OFFSET
    return ct, warnings


def sanitize_mr(mr: sitk.Image) -> tuple[sitk.Image, list[str]]:
    """Replace NaN/inf in the MR by 0 (no signal)."""
    return _replace_non_finite(mr, 0.0, "MR")
