"""OAR volumes over the dataset: typical adult ranges, robust outliers between cases, and a
drift of the median volume between the first and the second half of the cases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dataset.volumes import TYPICAL_VOLUME_ML
from hanseg.labels import OAR_NAMES, oar_file_name

from .rules import (
    DRIFT_RATIO,
    MAD_TO_SD,
    MIN_CASES_FOR_STATS,
    OUTLIER_MADS,
    WARNING,
    CaseResult,
    Finding,
)


def robust_outliers(
    values: Mapping[str, float], k: float = OUTLIER_MADS, min_n: int = MIN_CASES_FOR_STATS
) -> dict[str, float]:
    """The values more than ``k`` robust standard deviations (MAD x 1.4826) from their median,
    as case -> robust z score; nothing below ``min_n`` values. The scale is floored at 1 % of
    the median, so identical copies of one case do not flag a sub-percent difference."""
    if len(values) < min_n:
        return {}
    v = np.array(list(values.values()), float)
    median = float(np.median(v))
    scale = max(MAD_TO_SD * float(np.median(np.abs(v - median))), 0.01 * abs(median), 1e-12)
    z = {c: (x - median) / scale for c, x in values.items()}
    return {c: s for c, s in z.items() if abs(s) > k}


def half_ratio(values: Sequence[float], min_n: int = MIN_CASES_FOR_STATS) -> float | None:
    """Median of the second half over the median of the first half of ``values`` (in case
    order; the first half is the shorter one when the count is odd), or None when too few."""
    if len(values) < min_n:
        return None
    half = len(values) // 2
    first, second = float(np.median(values[:half])), float(np.median(values[half:]))
    return second / first if first > 0 else None


def _range_findings(case: CaseResult) -> list[Finding]:
    out = []
    for oar, ml in case.volumes_ml.items():
        lo, hi = TYPICAL_VOLUME_ML[oar]
        if ml > 0 and not lo <= ml <= hi:
            out.append(
                Finding(
                    case.case_id,
                    oar_file_name(case.case_id, oar),
                    "volume",
                    WARNING,
                    f"{oar} volume {ml:.3g} mL is outside the typical adult range {lo:g}-{hi:g} mL "
                    "(dataset.volumes): check that the file holds this OAR of this patient, in full",
                )
            )
    return out


def _outlier_findings(oar: str, volumes: Mapping[str, float]) -> list[Finding]:
    median = float(np.median(list(volumes.values()))) if volumes else 0.0
    return [
        Finding(
            c,
            oar_file_name(c, oar),
            "volume_outlier",
            WARNING,
            f"{oar} volume {volumes[c]:.3g} mL is {z:+.1f} robust SD from this dataset's median "
            f"{median:.3g} mL ({len(volumes)} cases): look for a partial, extended or mislabelled contour",
        )
        for c, z in robust_outliers(volumes).items()
    ]


def _drift_finding(oar: str, volumes: Mapping[str, float]) -> list[Finding]:
    cases = sorted(volumes)
    ratio = half_ratio([volumes[c] for c in cases])
    if ratio is None or 1 / DRIFT_RATIO <= ratio <= DRIFT_RATIO:
        return []
    half = len(cases) // 2
    return [
        Finding(
            "",
            "",
            "volume_drift",
            WARNING,
            f"{oar}: median volume x{ratio:.2f} between {cases[0]}..{cases[half - 1]} and "
            f"{cases[half]}..{cases[-1]}: the contouring changed within the dataset (HaN-Seg's cochleae "
            "are known to). The network learns a mixture: keep it in mind when reading validation scores",
        )
    ]


def volume_findings(cases: Sequence[CaseResult]) -> list[Finding]:
    """Volumes against typical adult ranges, then against the other cases of the dataset."""
    out = [f for case in cases for f in _range_findings(case)]
    for oar in OAR_NAMES:
        volumes = {c.case_id: c.volumes_ml[oar] for c in cases if c.volumes_ml.get(oar, 0.0) > 0}
        out += _drift_finding(oar, volumes) + _outlier_findings(oar, volumes)
    return out
