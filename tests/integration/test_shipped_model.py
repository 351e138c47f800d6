"""The shipped model on the ``test/`` case through ``process.py``, run once for this module:
its output is what ``test/expected_output*`` holds (what ``test.sh`` compares the container
with), and it is scored against ``test/ground_truth`` with absolute floors, so a model or a
pipeline that labels nothing, swaps sides or loses an OAR fails here whatever the expected
files say."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hanseg.compare import DEFAULT_MIN_DICE, compare_label_maps, compare_results, per_oar_dice
from hanseg.timing import parse_summary
from helpers import ROOT

OUTPUT = "images/head_neck_oar/case_01_seg.mha"
#: Floors for the one test case: below the model's own figures on unseen phantoms in
#: model/metadata.json (mean 0.877, lowest OAR 0.67), with room for one case's spread.
MEAN_DICE_FLOOR = 0.85
OAR_DICE_FLOOR = 0.5


@dataclass(frozen=True)
class Run:
    out: Path
    wall_s: float
    log: str


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("shipped") / "out"
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "process.py"),
            "--input",
            str(ROOT / "test"),
            "--output",
            str(out),
            "--model",
            str(ROOT / "model"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    return Run(out, wall, done.stderr)


@pytest.fixture(scope="module")
def output(run: Run) -> Path:
    return run.out


def annotated_oars() -> list[str]:
    """The OARs that ``test/ground_truth/OAR_data.csv`` marks as annotated (1) for case_01."""
    with open(ROOT / "test/ground_truth/OAR_data.csv", newline="") as fh:
        (row,) = [r for r in csv.DictReader(fh) if r["id"] == "case_01"]
    return [name for name, value in row.items() if name != "id" and float(value) == 1.0]


def test_the_floors_are_below_the_models_own_figures():
    scores = json.loads((ROOT / "model/metadata.json").read_text())["scores"]["unseen_phantoms"]["grids"]["original"]
    assert scores["mean_dice"] >= MEAN_DICE_FLOOR and scores["lowest_oar"][0] >= OAR_DICE_FLOOR


def test_expected_outputs_are_what_the_shipped_model_produces(output):
    """test.sh compares the container with test/expected_output*: after retraining, regenerate
    them (docs/container.md) or this test fails here rather than in Docker."""
    expected = ROOT / "test/expected_output" / OUTPUT
    assert compare_label_maps(output / OUTPUT, expected, DEFAULT_MIN_DICE) == []
    assert compare_results(output / "results.json", ROOT / "test/expected_output.json") == []


def test_the_logs_step_timings_add_up_to_the_wall_time(run: Run):
    """Every second of the run is in a named step (hanseg.timing): the summary line's steps
    cover the wall time measured outside the process, less what no code of it can time."""
    steps = parse_summary(run.log)
    assert steps is not None, "no step summary in the log"
    for name in ("python", "imports", "model", "read", "crop", "registration", "network", "to-ct-grid", "write"):
        assert name in steps, name
    assert "network precision bf16" in run.log or "network precision fp32" in run.log
    total = sum(steps.values())
    assert 0.9 * run.wall_s - 0.5 <= total <= run.wall_s + 0.1, (total, run.wall_s, steps)


def test_the_shipped_model_segments_the_test_case_above_absolute_floors(output):
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(output / OUTPUT)))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(ROOT / "test/ground_truth/case_01_seg.mha")))
    scores = per_oar_dice(labels, truth)
    annotated = annotated_oars()
    assert len(annotated) == 30
    missing = [name for name in annotated if name not in scores]
    assert not missing, f"annotated OARs neither predicted nor in the truth: {missing}"
    low = {name: round(scores[name], 3) for name in annotated if scores[name] < OAR_DICE_FLOOR}
    assert not low, f"OARs below Dice {OAR_DICE_FLOOR}: {low}"
    mean = float(np.mean([scores[name] for name in annotated]))
    assert mean >= MEAN_DICE_FLOOR, f"mean Dice {mean:.3f} < {MEAN_DICE_FLOOR}"
