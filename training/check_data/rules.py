"""What the dataset check reports, and by which rules: findings and their severities, the
settings, the thresholds, and the per-case and dataset results that carry the findings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hanseg.plans import DEFAULT_BODY_THRESHOLD_HU

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)
FINDING_COLUMNS = ("case", "file", "check", "severity", "message")

#: A head CT in HU always holds air (-1000); the lowest value a scanner writes is its padding
#: outside the reconstruction circle (-1024, some -2048 or -3024): anything lower is not HU.
HU_LOWEST = -3100.0

#: Bone reaches ~3000 HU; 12-bit scanners clip at 3071, extended scales for dental metal go
#: higher, so beyond this is worth a look (a warning), not an error.
HU_HIGHEST = 6000.0

#: Within-dataset volume statistics need enough cases to mean anything.
MIN_CASES_FOR_STATS = 5

#: Robust outlier rule: beyond this many MADs (scaled to a normal SD, see robust_outliers).
OUTLIER_MADS = 3.0

#: MAD -> standard deviation of a normal distribution. Unscaled, "3 MADs" is only ~2 SD and
#: would flag ~5 % of all volumes of a healthy dataset (about 60 warnings on 42 x 30 OARs).
MAD_TO_SD = 1.4826

#: Median volume ratio between the second and first half of the cases that counts as a drift
#: (the HaN-Seg cochleae: about 2).
DRIFT_RATIO = 1.6

#: Registration works on the CT body box with this margin (as preprocessing does).
BODY_MARGIN_MM = 10.0


@dataclass(frozen=True)
class Finding:
    case: str  # case id; "" for the dataset as a whole
    file: str  # the file concerned (its expected name when it is missing); "" for none
    check: str  # layout, oar_data, unknown_oar, ct, mr, grid, mask_values, empty_mask, overlap, ...
    severity: str  # error (breaks or corrupts training), warning (read it), info
    message: str


@dataclass
class Findings:
    """Collects one case's findings in the order they are found (mutable on purpose: an
    accumulator passed down the checks; the findings themselves are frozen)."""

    case: str
    items: list[Finding] = field(default_factory=list)

    def add(self, severity: str, file: str, check: str, message: str) -> None:
        self.items.append(Finding(self.case, file, check, severity, message))

    def error(self, file: str, check: str, message: str) -> None:
        self.add(ERROR, file, check, message)

    def warning(self, file: str, check: str, message: str) -> None:
        self.add(WARNING, file, check, message)

    def info(self, file: str, check: str, message: str) -> None:
        self.add(INFO, file, check, message)


@dataclass(frozen=True)
class Settings:
    registration: bool = True
    min_reliability: float = 1.0  # as training's --min-oar-reliability: lower-rated masks are left out
    grid_tol_mm: float = 1e-3
    body_threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU
    qa_dir: Path | None = None  # where the QA overlays go; None draws none


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    findings: tuple[Finding, ...]
    summary: Mapping[str, object]  # one row of cases.csv
    volumes_ml: Mapping[str, float]  # OAR -> mL, every readable mask


@dataclass(frozen=True)
class DatasetResult:
    findings: tuple[Finding, ...]  # dataset-level first, then case by case
    cases: tuple[CaseResult, ...]

    def count(self, severity: str) -> int:
        return sum(f.severity == severity for f in self.findings)
