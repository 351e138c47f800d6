import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

from evaluation.metrics import evaluate, score_case, score_oar, write_outputs
from phantoms import make_case, write_raw


def ball(shape, centre, radius_mm, spacing):
    grid = np.indices(shape).astype(float)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing))
    return d2 <= radius_mm**2


def test_dice_by_hand():
    gt = np.zeros((4, 4, 4), bool)
    gt[1:3, 1:3, 1:3] = True  # 8 voxels
    pred = np.zeros_like(gt)
    pred[1:3, 1:3, 1:2] = True  # 4 voxels, all inside
    dice, hd95 = score_oar(pred, gt, (1.0, 1.0, 1.0))
    assert dice == pytest.approx(2 * 4 / 12)
    assert hd95 == pytest.approx(1.0)


def test_hd95_is_in_mm_with_anisotropic_spacing():
    gt = np.zeros((10, 10, 10), bool)
    gt[4:6, 4:6, 4:6] = True
    pred = np.roll(gt, 2, axis=0)  # shifted 2 slices of 3 mm
    _, hd95 = score_oar(pred, gt, (3.0, 0.5, 0.5))
    assert hd95 == pytest.approx(6.0)


@pytest.mark.parametrize("shift", [0, 1, 3])
def test_agrees_with_monai(shift):
    spacing = (2.0, 0.8, 0.8)
    gt = ball((30, 60, 60), (15, 30, 30), 14.0, spacing)
    pred = ball((30, 60, 60), (15, 30 + shift, 30 - shift), 12.0, spacing)
    dice, hd95 = score_oar(pred, gt, spacing)

    def t(m: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(m[None, None].astype(np.float32))

    assert dice == pytest.approx(float(compute_dice(t(pred), t(gt))), abs=1e-6)
    monai_hd = float(compute_hausdorff_distance(t(pred), t(gt), percentile=95, spacing=list(spacing)))
    assert hd95 == pytest.approx(monai_hd, abs=0.5)  # percentile conventions differ by < a voxel


def test_empty_cases_follow_the_documented_rules():
    gt = np.zeros((5, 6, 7), np.uint8)
    gt[1:3, 1:3, 1:3] = 5  # brainstem annotated and present
    gt[3:5, 3:5, 3:5] = 7  # oral cavity annotated, never predicted
    pred = np.zeros_like(gt)
    pred[1:3, 1:3, 1:3] = 5
    pred[0, 0, 0] = 9  # cochlea predicted, not annotated: excluded
    present = np.zeros(31, bool)
    present[[0, 5, 7]] = True
    scores = {s.oar: s for s in score_case("c", pred, gt, present, (2.0, 1.0, 1.0))}
    assert set(scores) == {"Brainstem", "Cavity_Oral"}
    assert scores["Brainstem"].dice == 1.0 and scores["Brainstem"].hd95 == 0.0
    missing = scores["Cavity_Oral"]
    assert missing.dice == 0.0 and missing.missing_pred
    assert missing.hd95 == pytest.approx(np.linalg.norm([10.0, 6.0, 7.0]))


def test_cli_outputs_with_raw_layout_ground_truth(tmp_path):
    case = make_case(61, "small", "case_01")
    write_raw(case, tmp_path / "raw")
    (tmp_path / "pred").mkdir()
    sitk.WriteImage(case.labels, str(tmp_path / "pred/case_01_IMG_seg.nrrd"), True)
    summary = write_outputs(evaluate(tmp_path / "pred", tmp_path / "raw"), tmp_path / "out")
    assert summary["cases"] == 1 and summary["mean_dice"] == 1.0 and summary["mean_hd95"] == 0.0
    assert len(summary["per_oar"]) == len(case.present)
    assert (tmp_path / "out/metrics.csv").read_text().count("\n") == len(case.present) + 1
    assert json.loads((tmp_path / "out/summary.json").read_text())["cases"] == 1
    assert (tmp_path / "out/boxplot.png").stat().st_size > 1000
