"""The few-label study's comparison with scratch: exact values by hand."""

import pytest

from benchmarks.few_labels import comparison_table, comparisons, holm, paired_by_oar


def per_oar(dice: dict[str, float]) -> dict[str, dict]:
    return {oar: {"dice": d, "hd95": 1.0, "n": 3} for oar, d in dice.items()}


OARS = [
    "Bone_Mandible",
    "Brainstem",
    "Cavity_Oral",
    "Esophagus_S",
    "Eye_PL",
    "Eye_PR",
    "Glnd_Submand_L",
    "Glnd_Submand_R",
    "Glnd_Thyroid",
    "Larynx_SG",
]


def test_ten_oars_all_better_give_the_exact_two_sided_p_and_ties_are_dropped():
    base = per_oar(dict.fromkeys(OARS, 0.5) | {"Cochlea_L": 0.0})
    arm = per_oar(dict.fromkeys(OARS, 0.6) | {"Cochlea_L": 0.0})
    pair = paired_by_oar(arm, base)
    # the exact null distribution: all 10 signs positive has probability 2^-10, two-sided 2 * 2^-10
    assert pair.p == pytest.approx(2 / 1024)
    assert (pair.better, pair.worse) == (10, 0)
    assert pair.mean_difference == pytest.approx(0.1 * 10 / 11)  # the tied OAR still counts in the mean


def test_too_few_oars_that_differ_give_no_p_value():
    base = per_oar(dict.fromkeys(OARS[:5], 0.5))
    pair = paired_by_oar(per_oar(dict.fromkeys(OARS[:5], 0.7)), base)
    assert pair.p is None and pair.better == 5


def test_holm_multiplies_by_the_rank_and_stays_monotone():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_the_table_compares_every_arm_with_scratch_at_each_size_both_have():
    base = per_oar(dict.fromkeys(OARS, 0.5))
    results = {
        "scratch": {"3": {"per_oar": base}, "6": {"per_oar": base}},
        "ssl_full": {"3": {"per_oar": per_oar(dict.fromkeys(OARS, 0.4))}},
        "default": {"3": {"per_oar": base}, "6": {"per_oar": per_oar(dict.fromkeys(OARS, 0.6))}},
    }
    compared = comparisons(results, [3, 6])
    assert set(compared) == {"ssl_full", "default"} and set(compared["ssl_full"]) == {"3"}
    assert compared["default"]["3"]["p"] is None  # identical everywhere: nothing to test
    assert compared["ssl_full"]["3"]["p_holm"] == pytest.approx(2 * 2 / 1024)  # two tests in the family
    lines = comparison_table(compared, [3, 6])
    assert lines[2] == "| `ssl_full` | -0.100 (0↑ 10↓, p 0.004) | – |"
    assert lines[3] == "| `default` | +0.000 (0↑ 0↓, p –) | +0.100 (10↑ 0↓, p 0.004) |"
