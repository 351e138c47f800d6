"""Received instances on disk: written atomically, so a file that exists is complete.

A C-STORE is acknowledged only after :func:`store_instance` returned: the bytes are in a
temporary file of the same folder, flushed to the disk, renamed to their final name, and the
folder entry is flushed too. A crash or a full disk at any point leaves either the whole
file or nothing under its final name (a leftover ``.tmp-*`` is removed by :func:`sweep`).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from .errors import InvalidUidError, StoreError

log = logging.getLogger(__name__)

#: A UID as PS3.5 9.1 allows (digits and dots, at most 64): anything else would be a path.
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
TMP_PREFIX = ".tmp-"


def check_uid(value: str, what: str) -> str:
    value = str(value).strip().rstrip("\x00")
    if len(value) > 64 or not UID.match(value):
        raise InvalidUidError(f"the {what} {value!r} is not a valid DICOM UID: instance refused")
    return value


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries: without it a rename may be lost by a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` all or nothing (raises :class:`StoreError`)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    except OSError as exc:
        raise StoreError(f"cannot write to {path.parent}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def instance_path(incoming: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    return (
        incoming
        / check_uid(study_uid, "StudyInstanceUID")
        / check_uid(series_uid, "SeriesInstanceUID")
        / f"{check_uid(sop_uid, 'SOPInstanceUID')}.dcm"
    )


def store_instance(incoming: Path, study_uid: str, series_uid: str, sop_uid: str, data: bytes) -> Path:
    """Store one received instance under ``incoming/<study>/<series>/<sop>.dcm``; an instance
    sent twice replaces the first copy (same UID, same object)."""
    return write_atomic(instance_path(incoming, study_uid, series_uid, sop_uid), data)


def sweep(root: Path) -> int:
    """Remove the temporary files a crash left behind; how many."""
    count = 0
    for tmp in root.rglob(f"{TMP_PREFIX}*"):
        tmp.unlink(missing_ok=True)
        count += 1
    if count:
        log.info("removed %d partial file(s) left by an interrupted write under %s", count, root)
    return count
