"""Reading images and writing the label map on the CT's exact grid.

Axis contract (the one place it is written down; everything else refers here):

* SimpleITK speaks **x, y, z**: ``GetSize()``, ``GetSpacing()`` (mm), ``GetOrigin()`` (mm),
  and index tuples are (x, y, z). Physical space is ITK's LPS: +x = patient left,
  +y = posterior, +z = superior. ``GetDirection()`` is a row-major 3x3 matrix whose
  *columns* are the directions of the x, y, z index axes.
* numpy arrays from ``sitk.GetArrayFromImage`` are **z, y, x**. Every array-shaped value in
  this package (``shape``, boxes, patch sizes) is z, y, x in voxels unless its name ends in
  ``_xyz``.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import ImageReadError, InvalidImageError

log = logging.getLogger(__name__)

#: File endings SimpleITK reads for us, longest first so ``.nii.gz`` wins over ``.gz``.
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nrrd", ".mha", ".mhd", ".nii")


def image_suffix(path: Path) -> str | None:
    """The image ending of ``path`` (``.nii.gz``, ``.mha``...), or None for other files."""
    name = path.name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def image_files(folder: Path, warn: bool = True) -> list[Path]:
    """The image files in ``folder``, sorted by name; hidden files are skipped and other
    files are named in a warning (unless ``warn`` is False: a look ahead of the layout's own
    reading). An absent folder has none."""
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    skipped = [p.name for p in files if image_suffix(p) is None]
    if skipped and warn:
        log.warning("ignoring non-image files in %s: %s", folder, ", ".join(skipped))
    return [p for p in files if image_suffix(p) is not None]


def read_error(path: Path, exc: RuntimeError) -> ImageReadError:
    """The error for a file SimpleITK could not read (its header or its voxels). The message
    names the file once, at its start: ITK's own mentions of the path are taken out."""
    reason = itk_reason(exc)
    for mention in (f'"{path}"', str(path), f'"{path.name}"', path.name):
        reason = reason.replace(mention, "the file")
    return ImageReadError(f"{path.name}: cannot be read as an image ({reason})")


def read_image(path: Path) -> sitk.Image:
    """Read a 3D scalar image, raising a named error that says what is wrong with the file."""
    path = Path(path)
    if image_suffix(path) is None:
        raise ImageReadError(f"{path.name}: not a supported image file ({', '.join(IMAGE_SUFFIXES)})")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        raise read_error(path, exc) from exc
    check_3d_scalar(image, path.name)
    return image


#: ITK's wordings that name the file again (the caller names it already), and what is said instead.
_ITK_REWORDED: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"(sitk::ERROR: )?Unable to determine ImageIO reader for .*"),
        "no image reader recognises its contents",
    ),
    (re.compile(r"File cannot be read: .* for reading\.?"), "its header cannot be parsed"),
)


def itk_reason(exc: RuntimeError) -> str:
    """The readable part of an ITK exception: the text after "ITK ERROR: Class(0x…):" if
    there is one (the lines after it may be a matrix dump), else the last line. Wordings
    that repeat the file's name are reworded without it (the caller names the file)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else "unknown reason"
    for line in lines:
        if "ITK ERROR" in line:
            reason = line.split("):", 1)[-1].strip()
            if "determinant is 0" in reason:
                return "its direction matrix is singular (determinant 0): the orientation header is broken"
            break
    for pattern, reworded in _ITK_REWORDED:
        if pattern.fullmatch(reason):
            return reworded
    return reason


def check_3d_scalar(image: sitk.Image, what: str) -> None:
    """Reject 2D, 4D and multi-component images: the pipeline is 3D, one value per voxel."""
    if image.GetDimension() != 3:
        raise InvalidImageError(f"{what}: expected a 3D image, got {image.GetDimension()}D of size {image.GetSize()}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidImageError(
            f"{what}: expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()} components"
        )


def array_zyx(image: sitk.Image, dtype: type = np.float32) -> np.ndarray:
    """The voxel array of ``image`` in z, y, x order, as ``dtype`` (a copy)."""
    return sitk.GetArrayFromImage(image).astype(dtype, copy=False)


def image_like(array_zyx: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a z, y, x array as an image with ``reference``'s size, spacing, origin, direction."""
    expected = tuple(reversed(reference.GetSize()))
    if array_zyx.shape != expected:
        raise ValueError(f"array shape {array_zyx.shape} (z,y,x) != reference size {expected}")
    image = sitk.GetImageFromArray(array_zyx)
    image.CopyInformation(reference)
    return image


def same_grid(a: sitk.Image, b: sitk.Image, atol: float = 1e-6) -> bool:
    """True when ``a`` and ``b`` share size, spacing, origin and direction (to ``atol``)."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=atol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=atol)
        and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=atol)
    )


def write_image_atomic(image: sitk.Image, path: Path, compress: bool = True) -> Path:
    """Write ``image`` to a temporary file in the target folder, then rename it into place.

    A crash halfway leaves no file under the final name, so a reader (or the platform)
    never sees a truncated label map. The temporary name keeps the real ending because
    SimpleITK picks the writer from it.
    """
    path = Path(path)
    suffix = image_suffix(path) or path.suffix
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}{suffix}")
    try:
        sitk.WriteImage(image, str(tmp), compress)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_label_map(labels_zyx: np.ndarray, ct: sitk.Image, path: Path) -> Path:
    """Write a uint8 label map with the CT's exact size, spacing, origin and direction."""
    if labels_zyx.dtype != np.uint8:
        raise TypeError(f"label map must be uint8, got {labels_zyx.dtype}")
    image = image_like(labels_zyx, ct)
    log.debug("writing label map %s size=%s", path, image.GetSize())
    return write_image_atomic(image, path)
