"""Image headers and voxel values: each file's size, spacing, origin, direction and pixel type
(read without its voxels), the mask-to-CT grid comparison, and the CT's and MR's value ranges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hanseg.checks import check_direction, mr_intensity_offset
from hanseg.errors import ImageReadError, InvalidImageError
from hanseg.io import read_error, read_image

from .rules import HU_HIGHEST, HU_LOWEST, Findings


@dataclass(frozen=True)
class ImageInfo:
    """An image file's header, read without its voxels."""

    file: str
    dimension: int
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    pixel_type: str
    components: int


def read_header(path: Path) -> ImageInfo:
    """The header of an image file (no voxels are read); :class:`ImageReadError` if unreadable."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        raise read_error(path, exc) from exc
    return ImageInfo(
        path.name,
        reader.GetDimension(),
        tuple(reader.GetSize()),
        tuple(reader.GetSpacing()),
        tuple(reader.GetOrigin()),
        tuple(reader.GetDirection()),
        sitk.GetPixelIDValueAsString(reader.GetPixelID()),
        reader.GetNumberOfComponents(),
    )


def _fmt(values: Sequence[float], digits: int = 3) -> str:
    return "(" + ", ".join(f"{v:.{digits}f}" for v in values) + ")"


def grid_differences(mask: ImageInfo, ct: ImageInfo, tol_mm: float) -> list[str]:
    """Each header field in which ``mask`` is off the CT grid, with both values."""
    if mask.dimension != ct.dimension or mask.components != 1:
        return [f"dimension {mask.dimension}D with {mask.components} component(s), CT {ct.dimension}D scalar"]
    out = []
    if mask.size != ct.size:
        out.append(f"size {'x'.join(map(str, mask.size))} vs CT {'x'.join(map(str, ct.size))}")
    for name, a, b in (("spacing", mask.spacing, ct.spacing), ("origin", mask.origin, ct.origin)):
        off = float(np.max(np.abs(np.subtract(a, b))))
        if off > tol_mm:
            out.append(f"{name} {_fmt(a)} mm vs CT {_fmt(b)} mm (off by {off:.3f} mm)")
    if float(np.max(np.abs(np.subtract(mask.direction, ct.direction)))) > tol_mm:
        out.append(f"direction {_fmt(mask.direction, 4)} vs CT {_fmt(ct.direction, 4)}")
    return out


def _describe(info: ImageInfo, lo: float, hi: float) -> str:
    return (
        f"{'x'.join(map(str, info.size))} voxels at {'x'.join(f'{s:.3f}' for s in info.spacing)} mm, "
        f"{info.pixel_type}, values {lo:g}..{hi:g}"
    )


def image_summary(prefix: str, info: ImageInfo, lo: float, hi: float) -> dict[str, object]:
    return {
        f"{prefix}_size": "x".join(map(str, info.size)),
        f"{prefix}_spacing_mm": "x".join(f"{s:.4f}" for s in info.spacing),
        f"{prefix}_origin_mm": " ".join(f"{v:.2f}" for v in info.origin),
        f"{prefix}_type": info.pixel_type,
        f"{prefix}_min": float(f"{lo:.6g}"),
        f"{prefix}_max": float(f"{hi:.6g}"),
    }


def value_range(image: sitk.Image) -> tuple[float, float, int]:
    """(min, max, number of NaN/inf voxels) of an image; the count is 0 for integer types."""
    arr = sitk.GetArrayViewFromImage(image)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        bad = int(arr.size - np.count_nonzero(finite))
        if bad:
            return (float(arr[finite].min()), float(arr[finite].max()), bad) if bad < arr.size else (0.0, 0.0, bad)
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    return stats.GetMinimum(), stats.GetMaximum(), 0


def ct_findings(ct: sitk.Image, lo: float, hi: float, file: str, out: Findings) -> None:
    if lo >= 0:
        out.warning(
            file,
            "ct",
            f"CT values {lo:g}..{hi:g} have nothing below 0, so they are not Hounsfield units "
            "(raw scanner values): training subtracts 1024 (hanseg.checks.sanitize_ct). Check that this "
            "scanner's offset is 1024, or convert the CT to HU",
        )
    elif lo < HU_LOWEST or hi > HU_HIGHEST:
        out.warning(
            file,
            "ct",
            f"CT values {lo:g}..{hi:g} lie far outside -1024..~4000 HU: check the rescale "
            "slope/intercept of the conversion (metal on an extended HU scale can also do this)",
        )
    for message in check_direction(ct, "CT"):
        out.warning(file, "ct", message)


def mr_findings(mr: sitk.Image, lo: float, hi: float, file: str, out: Findings) -> float:
    """Warnings about the MR's values; returns its storage offset (0 if none)."""
    offset = mr_intensity_offset(mr)
    if offset:
        out.warning(
            file,
            "mr",
            f"MR values {lo:g}..{hi:g}: stored as unsigned 16-bit with a +{offset:g} offset. "
            "Training and inference subtract it (hanseg.checks.sanitize_mr), nothing to do here; other "
            "tools reading this file see a wrong background",
        )
    for message in check_direction(mr, "MR"):
        out.warning(file, "mr", message)
    return offset


def load_image(path: Path, what: str, out: Findings) -> tuple[ImageInfo, sitk.Image, float, float] | None:
    """Header, voxels and value range of a CT or MR; None (with an error) if unreadable."""
    try:
        info = read_header(path)
        image = read_image(path)
    except (ImageReadError, InvalidImageError) as exc:
        out.error(path.name, "unreadable", f"{exc}: training stops at this file. Re-export it as a 3D scalar NRRD")
        return None
    lo, hi, non_finite = value_range(image)
    if non_finite:
        out.warning(
            path.name,
            what,
            f"{non_finite} NaN/inf voxels: training replaces them (air in the CT, 0 in "
            "the MR); check the conversion that wrote them",
        )
    out.info(path.name, what, f"{what.upper()} {_describe(info, lo, hi)}")
    return info, image, lo, hi
