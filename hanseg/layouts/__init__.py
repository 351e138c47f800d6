"""Input layouts of ``process.py``, one code path after reading (:func:`run` picks):

* ``sockets``: the Grand-Challenge socket layout (newer phases), when ``<input>/inputs.json``
  is present: one case per job, the exit code says how it went;
* ``gc2023``: the HaN-Seg 2023 layout of the official template (``images/ct/``,
  ``images/t1-mri/``), any number of cases, ``results.json``;
* ``dicom``: a folder of DICOM files (a scanner or PACS export, any names and nesting), when
  there is neither: one RTSTRUCT and one DICOM SEG per study, ``results.json``.

``common`` holds what they share: read → predict → write atomically, and the checks made
before any work.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..folders import detect_layout
from ..resources import peak_memory_gib
from .common import Predictor
from .dicom import DicomConfig, run_dicom
from .gc2023 import run_hanseg2023
from .sockets import SocketConfig, run_socket_case

log = logging.getLogger(__name__)

_DEFAULT_SOCKETS = SocketConfig()
_DEFAULT_DICOM = DicomConfig()


def run(
    input_dir: Path,
    output_dir: Path,
    predictor: Predictor,
    sockets: SocketConfig = _DEFAULT_SOCKETS,
    dicom: DicomConfig = _DEFAULT_DICOM,
    qa_dir: Path | None = None,
) -> int:
    """Run whichever interface is mounted: 0 if every case produced its output, 1 otherwise.
    ``qa_dir``: where the .mha layouts write each case's QA picture (the DICOM layout takes
    ``dicom.qa_dir``)."""
    layout = detect_layout(input_dir)  # raises, naming the folder, when there is none
    if layout == "sockets":
        log.info("socket layout (%s/inputs.json)", input_dir)
        code = run_socket_case(input_dir, output_dir, predictor, sockets, qa_dir)
    elif layout == "dicom":
        log.info("DICOM layout (DICOM files under %s)", input_dir)
        code = run_dicom(input_dir, output_dir, predictor, dicom)
    else:
        log.info("HaN-Seg 2023 layout (images/ct/)")
        code = run_hanseg2023(input_dir, output_dir, predictor, qa_dir)
    # The platform's memory limit is the usual reason a job dies without a message: say how close.
    log.info("peak memory %.2f GiB (the platform's limit is often 4 GB)", peak_memory_gib())
    return code
