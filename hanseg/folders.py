"""The input and output folders of ``process.py``, checked before the model is loaded: which
of the three input layouts is there, and whether the output can be written. Standard library
only, so that a wrong folder is reported within a second, not after the network was loaded
and timed.

Layouts, in the order they are recognised (:func:`detect_layout`):

* ``sockets``: ``<input>/inputs.json`` (Grand-Challenge's newer phases);
* ``gc2023``: ``<input>/images/ct/`` (the HaN-Seg 2023 template);
* ``dicom``: DICOM files anywhere under ``<input>`` (a scanner or PACS export).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputLayoutError, OutputError

INPUTS_JSON = "inputs.json"
#: the output socket's relative_path unless --output-socket says otherwise
OUTPUT_SOCKET_PATH = "images/head_neck_oar"
CT_DIR = Path("images/ct")
MR_DIR = Path("images/t1-mri")
#: A file is taken for DICOM when these bytes follow its 128-byte preamble (PS3.10).
DICM_MAGIC = b"DICM"
#: How many files detection opens before it gives up (a non-DICOM folder is answered fast).
DETECTION_FILES = 50
#: what the error names when no layout is found
LAYOUTS_LOOKED_FOR = f"{INPUTS_JSON} (Grand-Challenge sockets), {CT_DIR}/ (HaN-Seg 2023 layout) or DICOM files (a scanner or PACS export)"


def has_sockets(input_dir: Path) -> bool:
    return (input_dir / INPUTS_JSON).is_file()


def _is_dicom_file(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == DICM_MAGIC
    except OSError:
        return False


def has_dicom(input_dir: Path) -> bool:
    """True when one of the first files under ``input_dir`` (any depth) is a DICOM file."""
    if not input_dir.is_dir():
        return False
    seen = 0
    for path in sorted(input_dir.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(input_dir).parts):
            if _is_dicom_file(path):
                return True
            seen += 1
            if seen >= DETECTION_FILES:
                return False
    return False


def detect_layout(input_dir: Path) -> str:
    """``sockets``, ``gc2023`` or ``dicom``; raises :class:`InputLayoutError` naming the folder and
    what was looked for when it is missing or holds none of them."""
    if not input_dir.is_dir():
        raise InputLayoutError(
            f"the input folder {input_dir} does not exist (or is not a folder); it should hold {LAYOUTS_LOOKED_FOR}"
        )
    if has_sockets(input_dir):
        return "sockets"
    if (input_dir / CT_DIR).is_dir():
        return "gc2023"
    if has_dicom(input_dir):
        return "dicom"
    raise InputLayoutError(f"no input found in {input_dir}: looked for {LAYOUTS_LOOKED_FOR}")


def check_can_write(folder: Path) -> None:
    """Fail at once when the output folder could not be written, without creating anything: an
    existing folder must take a file, else its nearest existing parent must be a writable folder."""
    if folder.is_dir():
        check_writable(folder)
        return
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write to the output folder {folder}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to the output folder {folder}: {parent} is not writable")


def check_writable(folder: Path) -> None:
    """Fail before any work when the output folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to the output folder {folder}: {exc.strerror or exc}") from exc
