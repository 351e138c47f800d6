"""benchmarks.precision's own arithmetic, on tiny arrays and a copied model folder (process.py
is not run): per-OAR Dice pooled over the cases that score each OAR, voxels changed, the
judgement against the targets, and the record in metadata.json that the model card shows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.precision import (
    TARGETS,
    agreement,
    changed_voxels,
    cpu_description,
    judge,
    pool_dice,
    record,
    record_entry,
    table,
)
from hanseg.compare import per_oar_dice
from helpers import ROOT
from training.model_card import read_metadata


def test_per_oar_dice_is_pooled_over_the_cases_that_score_that_oar_only():
    reference = np.zeros((2, 4, 5), np.int64)
    reference[0, :2, :] = 5  # Brainstem: 10 voxels
    reference[1, 0, :2] = 8  # Cochlea_L: 2 voxels
    labels = reference.copy()
    labels[1, 0, 1] = 0  # Cochlea_L loses 1 of 2 voxels: Dice 2*1/(1+2) = 2/3
    case_a = per_oar_dice(labels, reference)
    assert case_a == {"Brainstem": 1.0, "Cochlea_L": pytest.approx(2 / 3)}
    case_b = {"Brainstem": 0.8}  # no Cochlea_L in either map of this case: not a zero
    pooled = pool_dice({"case_01": case_a, "case_02": case_b})
    assert pooled == {"Brainstem": pytest.approx(0.9), "Cochlea_L": pytest.approx(2 / 3)}
    assert list(pooled) == ["Brainstem", "Cochlea_L"]  # label order (5 before 8)
    assert changed_voxels(labels, reference) == {"Cochlea_L": 1}
    swapped = reference.copy()
    swapped[0, 0, 0] = 8  # one Brainstem voxel becomes Cochlea_L: one changed voxel for each
    assert changed_voxels(swapped, reference) == {"Brainstem": 1, "Cochlea_L": 1}

    agree = agreement({"case_01": case_a, "case_02": case_b}, voxels_changed=3, voxels_total=400)
    assert agree["mean_dice"] == pytest.approx((0.9 + 2 / 3) / 2)
    assert agree["lowest_oar"] == ["Cochlea_L", pytest.approx(2 / 3)]
    assert agree["voxels_changed"] == 3
    assert agree["voxels_changed_fraction"] == pytest.approx(0.0075)


def _agree(mean: float, low: float) -> dict:
    return {"mean_dice": mean, "lowest_oar": ["OpticChiasm", low]}


@pytest.mark.parametrize(
    "mean, low, fp32, bf16, met",
    [
        (0.996, 0.985, 0.870, 0.869, [True, True, True]),
        (0.995, 0.98, 0.870, 0.868, [True, True, True]),  # each target exactly met
        (0.9949, 0.985, 0.870, 0.870, [False, True, True]),
        (0.998, 0.9799, 0.870, 0.870, [True, False, True]),
        (0.998, 0.99, 0.870, 0.8679, [True, True, False]),  # 0.0021 lower against the truth
        (0.998, 0.99, 0.870, 0.880, [True, True, True]),  # bf16 better than fp32 is fine
    ],
)
def test_the_targets_are_judged_as_asked(mean, low, fp32, bf16, met):
    assert TARGETS == {"mean_dice": 0.995, "min_oar_dice": 0.98, "truth_drop": 0.002}
    verdicts = judge(_agree(mean, low), {"fp32": fp32, "bf16": bf16})
    assert [ok for ok, _ in verdicts] == met
    assert "OpticChiasm" in verdicts[1][1]


def test_the_record_is_written_read_back_and_shown_in_the_card(tmp_path: Path):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("metadata.json", "plans.json"):
        shutil.copy(ROOT / "model" / name, model / name)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 avx512_bf16 amx_tile\n")
    cpu = cpu_description(cpuinfo)
    assert cpu == {"model": "Test CPU 9000", "bf16_units": ["avx512_bf16"]}
    summary = {
        "bf16_vs_fp32": {
            "mean_dice": 0.9987654,
            "lowest_oar": ["Cochlea_R", 0.9812345],
            "per_oar_dice": {"Brainstem": 0.9999, "Cochlea_R": 0.9812345},
            "voxels_changed": 12,
            "voxels_changed_fraction": 12 / 98765,
        },
        "voxels_total": 98765,
        "voxels_changed_per_oar": {"Cochlea_R": 7, "Brainstem": 5},
        "truth_mean_dice": {"fp32": 0.8771, "bf16": 0.8768},
        "seconds_per_case": {"fp32": 81.44, "bf16": 39.96},
    }
    cmd = "python -m benchmarks.precision --model model --cases 2 --seed 9000 --size small"
    settings = {"cases": 2, "seed": 9000, "size": "small", "device": "cpu"}
    record(model, record_entry(cmd, settings, cpu, summary))

    got = read_metadata(model)["precision_agreement"]
    assert got == {
        "command": cmd,
        "settings": settings,
        "cpu": {"model": "Test CPU 9000", "bf16_units": ["avx512_bf16"]},
        "bf16_vs_fp32": {
            "mean_dice": 0.99877,
            "lowest_oar": ["Cochlea_R", 0.98123],
            "per_oar_dice": {"Brainstem": 0.9999, "Cochlea_R": 0.98123},
            "voxels_changed_fraction": 0.000122,
        },
        "truth_mean_dice": {"fp32": 0.8771, "bf16": 0.8768},
        "seconds_per_case": {"fp32": 81.4, "bf16": 40.0},
    }
    assert json.loads((ROOT / "model" / "metadata.json").read_text()) != read_metadata(model)  # a copy was changed
    card = (model / "README.md").read_text()
    assert "## Precision" in card
    assert "mean Dice 0.9988 over 2 OARs, lowest Cochlea_R 0.9812; 1.22e-04 of all voxels changed label" in card
    assert "fp32 0.8771, bf16 0.8768 (-0.0003)" in card
    assert "fp32 81.4, bf16 40.0" in card
    assert f"From: `{cmd}`" in card
    assert "on Test CPU 9000 (avx512_bf16)" in card

    md = table(summary)
    assert "| Cochlea_R | 0.9812 | 7 |" in md.splitlines()[2]
    assert "| Brainstem | 0.9999 | 5 |" in md.splitlines()[3]
    assert "12 of 98765 (1.22e-04)" in md
