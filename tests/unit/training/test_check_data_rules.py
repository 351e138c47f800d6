"""The dataset check's volume rules on plain numbers: robust outliers, the half split, drift."""

from __future__ import annotations

import pytest

from training.check_data import CaseResult, half_ratio, robust_outliers, volume_findings


def test_robust_outliers_on_numbers() -> None:
    volumes = {f"case_{i:02d}": v for i, v in enumerate([10.0, 11.0, 9.0, 10.5, 9.5, 10.0, 30.0], 1)}
    assert list(robust_outliers(volumes)) == ["case_07"]
    assert robust_outliers(volumes)["case_07"] > 3
    assert robust_outliers(dict(list(volumes.items())[-4:])) == {}  # fewer than 5 cases: no statistics
    identical = {f"c{i}": 10.0 for i in range(6)}
    assert robust_outliers({**identical, "c9": 10.05}) == {}  # MAD 0: scale floored at 1 % of the median
    assert list(robust_outliers({**identical, "c9": 13.0})) == ["c9"]


def test_half_ratio_on_numbers() -> None:
    assert half_ratio([1.0, 1.0, 1.0, 2.0, 2.0, 2.0]) == pytest.approx(2.0)
    assert half_ratio([1.0, 1.0, 2.0, 2.0, 2.0]) == pytest.approx(2.0)  # odd: the first half is the shorter
    assert half_ratio([1.0, 1.0, 2.0, 2.0]) is None


def test_cochlea_drift_is_reported_once_for_the_dataset() -> None:
    cases = [
        CaseResult(f"case_{i:02d}", (), {}, {"Cochlea_L": v, "Cochlea_R": v, "Brainstem": 25.0 + i})
        for i, v in enumerate([0.08, 0.09, 0.08, 0.085, 0.17, 0.16, 0.18, 0.165], 1)
    ]
    drift = [f for f in volume_findings(cases) if f.check == "volume_drift"]
    assert [(f.case, f.message.split(":")[0]) for f in drift] == [("", "Cochlea_L"), ("", "Cochlea_R")]
    assert "x2" in drift[0].message
