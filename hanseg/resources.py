"""Will a case fit in memory? Checked from the image header, before any voxel is read.

The platform kills a job that passes its memory limit (often 4 GB) without a message, so a
CT far larger than usual is refused up front with the numbers instead. The per-voxel cost
was measured on a full-size phantom (CT 1024×1024×197, 206 M voxels): this process peaked
at 2.78 GiB under ``docker run --memory=4g`` (the container's ``peak memory`` log line), i.e.
about 12 bytes per CT voxel on top of ~0.5 GiB of Python, torch and the model: the CT itself,
the body mask and its components, and the running argmax (best probability + label) on the
CT grid. :data:`BYTES_PER_CT_VOXEL` keeps a margin over that.
"""

from __future__ import annotations

import logging
from pathlib import Path

import SimpleITK as sitk

from .errors import InputTooLargeError
from .io import read_error

log = logging.getLogger(__name__)

BYTES_PER_CT_VOXEL = 13
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


def header_voxels(path: Path) -> int:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()  # the header only: no voxel data is read
    except RuntimeError as exc:
        raise read_error(path, exc) from exc
    n = 1
    for s in reader.GetSize():
        n *= s
    return n


def check_fits(ct_path: Path, limit: int | None = None, in_use: int | None = None) -> None:
    """Raise :class:`InputTooLargeError` if segmenting this CT needs more than the memory left."""
    limit = memory_limit_bytes() if limit is None else limit
    if limit is None:
        return  # not Linux: nothing to compare with
    in_use = current_rss_bytes() if in_use is None else in_use
    voxels = header_voxels(ct_path)
    need, left = voxels * BYTES_PER_CT_VOXEL, limit - in_use
    log.debug("%s: %d voxels, about %.1f GiB needed, %.1f GiB left", ct_path.name, voxels, need / GIB, left / GIB)
    if need > left:
        raise InputTooLargeError(
            f"{ct_path.name}: a CT of {voxels / 1e6:.0f} M voxels needs about {need / GIB:.1f} GiB, but only "
            f"{left / GIB:.1f} GiB of the {limit / GIB:.1f} GiB memory limit is left: crop the CT to the head "
            "and neck or give the job more memory (a usual HaN-Seg CT, 1024×1024×200, needs about 2.5 GiB)")
