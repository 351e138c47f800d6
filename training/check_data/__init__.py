"""``python -m training.check_data``: check a HaN-Seg raw dataset before training on it.

What nnU-Net's ``--verify_dataset_integrity`` does, for this data: every problem that would
break training, or silently teach it wrong labels, is found before hours of GPU time are spent.

    python -m training.check_data --data DIR [--out DIR] [--no-registration] [--workers N]

``DIR`` holds the download's raw layout (``case_XX/case_XX_IMG_CT.nrrd``, ``case_XX_IMG_MR_T1.nrrd``,
``case_XX_OAR_<name>.seg.nrrd`` and ``OAR_data.csv``; see :mod:`dataset.raw`). Per case: the CT
and MR headers and value ranges (raw CT values, the MR's +32768 storage offset), every mask's
header against the CT grid (cheap: no voxels decompressed), mask values, empty masks, voxels
claimed by two OARs and which one the label map gives them to, mask files against
``OAR_data.csv`` (by OAR name), unknown OAR file names, the MR registration and each OAR's
volume. Over the dataset: volumes against :data:`dataset.volumes.TYPICAL_VOLUME_ML` and against
the other cases (robust outliers, a jump between the first and second half of the cases).

Output in ``--out`` (default ``check_data/``): ``findings.csv`` (case, file, check, severity,
message: one row per finding), ``cases.csv`` (one row per case: sizes, spacings, types, ranges,
registration figures, volumes) and ``qa/<case>.png`` (the CT with the label map training would
use). A summary goes to the terminal. Exit code 1 when anything would break or corrupt training
(severity ``error``), 0 otherwise (warnings are for a person to read), 2 for bad arguments.

Modules, one concern each: ``rules`` (findings, severities, settings, thresholds, results),
``naming`` (case folders and file names), ``oar_table`` (``OAR_data.csv`` against the files),
``images`` (headers, sizes, spacings, pixel types, value ranges), ``masks`` (mask values, grid,
overlaps, the label map), ``registration`` (MR to CT), ``qa`` (the QA picture), ``cases`` (every
check of one case), ``statistics`` (volumes across the dataset), ``runner`` (the dataset, in a
pool of worker processes), ``report`` (the CSV tables and the summary) and ``cli``.
"""

from __future__ import annotations

from .cases import check_case
from .cli import main
from .oar_table import load_table
from .report import log_summary, write_cases, write_findings
from .rules import (
    ERROR,
    INFO,
    SEVERITIES,
    WARNING,
    CaseResult,
    DatasetResult,
    Finding,
    Settings,
)
from .runner import check_dataset
from .statistics import half_ratio, robust_outliers, volume_findings

__all__ = [
    "ERROR",
    "INFO",
    "SEVERITIES",
    "WARNING",
    "CaseResult",
    "DatasetResult",
    "Finding",
    "Settings",
    "check_case",
    "check_dataset",
    "half_ratio",
    "load_table",
    "log_summary",
    "main",
    "robust_outliers",
    "volume_findings",
    "write_cases",
    "write_findings",
]
