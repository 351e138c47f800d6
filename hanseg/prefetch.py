"""The first case's CT and MR read from disk while torch, MONAI and the model load.

``process.py`` spends its first seconds importing torch and MONAI and loading the model, all
in Python on one core; SimpleITK releases the interpreter lock while it reads (and
decompresses) an image, so the reading can run on the other core meanwhile. On a 1024² CT
the read took 1.4 s alone and added nothing to the imports when run beside them.

Only the HaN-Seg 2023 layout's first case is read ahead (its files are known from the folder
names alone). Nothing changes in what is checked or reported: the CT is read ahead only if
the memory check from its header passes (the same check the case makes before reading), a
file that fails to read is simply read again by the case, which reports the error, and the
case takes the images from here or, if they are not here, reads them itself. Whatever the
first case does not take is dropped, so at most one case's images are ever held twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import SimpleITK as sitk

from .folders import CT_DIR, MR_DIR
from .io import image_files, read_image
from .resources import fits

log = logging.getLogger(__name__)


def first_gc2023_case(input_dir: Path) -> tuple[Path, Path | None] | None:
    """The first CT and its MR as the 2023 layout will pair them; None when it will not."""
    # no warning about other files here: the layout warns when it reads the folders
    cts, mrs = image_files(input_dir / CT_DIR, warn=False), image_files(input_dir / MR_DIR, warn=False)
    if not cts or (mrs and len(mrs) != len(cts)):
        return None
    return cts[0], mrs[0] if mrs else None


class Prefetch:
    """Images read in a background thread, handed over once by path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Path, Future[sitk.Image | None]] = {}

    def start(self, ct: Path, others: Sequence[Path] = ()) -> None:
        """Read ``ct`` (if its header passes the memory check) and then ``others``, in order."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        with self._lock:
            self._pending[ct.resolve()] = pool.submit(self._read_ct, ct)
            for path in others:
                self._pending[path.resolve()] = pool.submit(read_image, path)
        pool.shutdown(wait=False)

    @staticmethod
    def _read_ct(path: Path) -> sitk.Image | None:
        return read_image(path) if fits(path) else None

    def take(self, path: Path) -> sitk.Image | None:
        """The image read ahead for ``path`` (waiting for it), or None: not read ahead, too
        large to read before the case's own check, or unreadable (the caller reads it and
        reports why)."""
        with self._lock:
            future = self._pending.pop(path.resolve(), None)
        if future is None:
            return None
        try:
            image = future.result()
        except Exception as exc:  # reported by the caller's own read
            log.debug("%s was not read ahead: %s", path.name, exc)
            return None
        if image is not None:
            log.debug("%s read ahead while the model loaded", path.name)
        return image

    def drop(self) -> None:
        """Forget what was not taken (its reading finishes in the background and is freed)."""
        with self._lock:
            self._pending.clear()


#: The process's read-ahead (``process.py`` starts it; :func:`hanseg.layouts.common.segment` takes).
PREFETCH = Prefetch()
