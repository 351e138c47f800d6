"""Will a case fit in memory? Checked from the image header, before any voxel is read.

The platform kills a job that passes its memory limit (often 4 GB) without a message, so a
CT far larger than usual is refused up front with the numbers instead. What a case needs
beyond the process's memory at the check (Python, torch, the model):

* the CT as stored (2 bytes a voxel for int16; a CT stored as unsigned raw values is shifted
  into a second, signed copy), the label map on the CT grid and its copy into the image that
  is written: :data:`BYTES_PER_LABEL_VOXEL`;
* the network's part, which does not grow with the CT: the crop stops at the plan's
  ``oar_depth_mm`` below the top of the body, so the 31-channel probabilities cover at most the
  head and neck's width and that depth, and the way back to the CT grid works in bounded slabs:
  :data:`NETWORK_GIB`.

Both were measured with ``python -m benchmarks.real_size`` (docs/benchmarks.md): a real-size CT
of 1024×1024×330 reaching the thorax against the same case cut to the head and neck.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import HansegError, InputTooLargeError
from .io import read_error

log = logging.getLogger(__name__)

#: The label map (uint8) on the CT grid and its copy into the written image, per CT voxel.
BYTES_PER_LABEL_VOXEL = 2
#: The network grid's probabilities, the input channels and the slab buffers, whatever the CT's size.
NETWORK_GIB = 1.5
GIB = 2**30
# cgroup v2, then v1: the container's limit ("max" or a huge number when unlimited).
CGROUP_LIMIT_FILES = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def memory_limit_bytes() -> int | None:
    """The smaller of the cgroup (container) limit and the machine's total memory."""
    limits = [v for v in (_read_int(p) for p in CGROUP_LIMIT_FILES) if v is not None and v < 2**60]
    try:
        meminfo = Path("/proc/meminfo").read_text().split()
        limits.append(int(meminfo[meminfo.index("MemTotal:") + 1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return min(limits) if limits else None


def current_rss_bytes() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096
    except (OSError, ValueError, IndexError):
        return 0


def peak_memory_gib() -> float:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB); 0 if unknown."""
    try:
        import resource
    except ImportError:  # not on Linux/macOS
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


#: Bytes a voxel of each stored type takes in memory.
_PIXEL_BYTES = {
    sitk.sitkUInt8: 1,
    sitk.sitkInt8: 1,
    sitk.sitkUInt16: 2,
    sitk.sitkInt16: 2,
    sitk.sitkUInt32: 4,
    sitk.sitkInt32: 4,
    sitk.sitkFloat32: 4,
    sitk.sitkFloat64: 8,
}
_UNSIGNED = (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkUInt32)


def _header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()  # the header only: no voxel data is read
    except RuntimeError as exc:
        raise read_error(path, exc) from exc
    return reader


def header_voxels(path: Path) -> int:
    return int(np.prod(_header(path).GetSize()))


def bytes_needed(voxels: int, pixel_id: int) -> int:
    """What segmenting a CT of ``voxels`` stored as ``pixel_id`` adds to the process's memory."""
    stored = _PIXEL_BYTES.get(pixel_id, 4)
    shifted = 2 if pixel_id in _UNSIGNED else 0  # raw scanner values: shifted into a signed copy
    return int(NETWORK_GIB * GIB) + voxels * (stored + shifted + BYTES_PER_LABEL_VOXEL)


def check_volume_fits(
    name: str, voxels: int, pixel_id: int, limit: int | None = None, in_use: int | None = None
) -> None:
    """Raise :class:`InputTooLargeError` if segmenting a CT of ``voxels`` stored as ``pixel_id``
    needs more than the memory left; ``name`` says which CT in the log and the message."""
    limit = memory_limit_bytes() if limit is None else limit
    if limit is None:
        return  # not Linux: nothing to compare with
    in_use = current_rss_bytes() if in_use is None else in_use
    need, left = bytes_needed(voxels, pixel_id), limit - in_use
    log.info("%s: %d M voxels, about %.1f GiB needed, %.1f GiB left", name, voxels // 10**6, need / GIB, left / GIB)
    if need > left:
        raise InputTooLargeError(
            f"{name}: a CT of {voxels / 1e6:.0f} M voxels needs about {need / GIB:.1f} GiB, but only "
            f"{left / GIB:.1f} GiB of the {limit / GIB:.1f} GiB memory limit is left: crop the CT to the head "
            "and neck or give the job more memory (the largest HaN-Seg CTs, 1024×1024×350, need about "
            f"{bytes_needed(1024 * 1024 * 350, sitk.sitkInt16) / GIB:.1f} GiB)"
        )


#: What torch, MONAI and the model add to the process after the read-ahead starts and before the
#: case's own check (0.54 GiB was held at the check in ``python -m benchmarks.real_size``).
STARTUP_BYTES = int(0.75 * GIB)


def fits(ct_path: Path) -> bool:
    """:func:`check_fits` without a word in the log, made before the model loads, so the model's
    :data:`STARTUP_BYTES` are counted as if already held: True when the case's own check would
    pass later (a file whose header cannot be read does not fit; the case's check says why)."""
    limit = memory_limit_bytes()
    try:
        header = _header(ct_path)
    except HansegError:
        return False
    needed = bytes_needed(int(np.prod(header.GetSize())), header.GetPixelID())
    return limit is None or needed <= limit - current_rss_bytes() - STARTUP_BYTES


def image_bytes(image: sitk.Image) -> int:
    """The bytes ``image``'s voxels take in memory."""
    voxels = int(image.GetNumberOfPixels()) * int(image.GetNumberOfComponentsPerPixel())
    return voxels * _PIXEL_BYTES.get(image.GetPixelID(), 4)


def check_fits(ct_path: Path, limit: int | None = None, in_use: int | None = None) -> None:
    """:func:`check_volume_fits` from an image file's header, before any voxel is read."""
    header = _header(ct_path)
    check_volume_fits(ct_path.name, int(np.prod(header.GetSize())), header.GetPixelID(), limit, in_use)
