"""The optional metrics of ``evaluation.metrics``: ARI per case and HD per OAR, by hand and
against scikit-learn / scikit-image, and the default outputs left exactly as they were."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from skimage.metrics import hausdorff_distance
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics.cluster import contingency_matrix

import evaluation.metrics as metrics
from evaluation.metrics import (
    ExtraScore,
    Score,
    adjusted_rand_index,
    contingency_table,
    evaluate,
    hausdorff_oar,
    score_case,
    score_oar,
    summarize,
    write_outputs,
)

BASE_FIELDS = ["case", "oar", "dice", "hd95", "missing_pred"]
BASE_SUMMARY = {"cases", "mean_dice", "mean_hd95", "min_oar_dice", "per_oar"}
ALL = ("dice", "hd95", "hd", "ari")


# --- ARI -------------------------------------------------------------------------------------


def test_ari_two_labels_by_hand():
    # gt   0 0 0 1 1 1      contingency (rows gt, cols pred):   pred0 pred1 | a_i
    # pred 0 0 1 1 1 1                                  gt0     2     1   |  3
    #                                                   gt1     0     3   |  3
    #                                                   b_j     2     4   |  n = 6
    # I = C(2,2)+C(3,2) = 4, A = 3+3 = 6, B = 1+6 = 7, N = C(6,2) = 15, E = AB/N = 2.8
    # ARI = (4 - 2.8) / ((6+7)/2 - 2.8) = 1.2 / 3.7 = 12/37
    gt = np.array([0, 0, 0, 1, 1, 1], np.uint8).reshape(1, 2, 3)
    pred = np.array([0, 0, 1, 1, 1, 1], np.uint8).reshape(1, 2, 3)
    assert contingency_table(gt, pred).tolist() == [[2, 1], [0, 3]]
    assert adjusted_rand_index(gt, pred) == 12 / 37


def test_ari_three_labels_by_hand():
    # gt   0 0 0 0 1 1 2 2 2    contingency:   pred0 pred1 pred2 | a_i
    # pred 0 0 0 1 1 1 2 2 0             gt0     3     1     0   |  4
    #                                    gt1     0     2     0   |  2
    #                                    gt2     1     0     2   |  3
    #                                    b_j     4     3     2   |  n = 9
    # I = 3+1+1 = 5, A = 6+1+3 = 10, B = 6+3+1 = 10, N = 36, E = 100/36 = 25/9
    # ARI = (5 - 25/9) / (10 - 25/9) = (20/9) / (65/9) = 4/13
    gt = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2], np.uint8).reshape(1, 3, 3)
    pred = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0], np.uint8).reshape(1, 3, 3)
    assert contingency_table(gt, pred).tolist() == [[3, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert adjusted_rand_index(gt, pred) == 4 / 13
    # a partition measure: renaming the labels changes nothing
    assert adjusted_rand_index(gt, np.choose(pred, [7, 0, 30]).astype(np.uint8)) == 4 / 13


def test_ari_degenerate_cases_follow_scikit_learn():
    zeros, fives = np.zeros((2, 2, 2), np.uint8), np.full((2, 2, 2), 5, np.uint8)
    singletons = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    assert adjusted_rand_index(zeros, fives) == 1.0  # both one label
    assert adjusted_rand_index(singletons, singletons[::-1]) == 1.0  # both all singletons
    assert adjusted_rand_index(zeros, singletons) == 0.0  # I = 0, B = 0: numerator 0
    assert adjusted_rand_index(zeros[:1, :1, :1], fives[:1, :1, :1]) == 1.0  # one voxel, N = 0
    assert adjusted_rand_score(zeros.ravel(), singletons.ravel()) == 0.0


def test_pair_counts_are_exact_beyond_int64():
    # 4e9 voxels of one label: n(n-1) = 1.6e19 overflows int64; Python ints do not
    n = 4_000_000_000
    assert metrics._pairs(np.array([n, 1, 0], np.int64)) == n * (n - 1) // 2 == 7_999_999_998_000_000_000


@pytest.mark.parametrize("seed", range(5))
def test_ari_agrees_with_scikit_learn(seed, monkeypatch):
    monkeypatch.setattr(metrics, "_CHUNK", 97)  # many chunks, the last one partial
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 31, (6, 7, 8)).astype(np.uint8)
    pred = np.where(rng.random(gt.shape) < 0.3, rng.integers(0, 31, gt.shape), gt).astype(np.uint8)
    table = contingency_table(gt, pred)
    expected = contingency_matrix(gt.ravel(), pred.ravel())
    assert table[np.ix_(np.unique(gt), np.unique(pred))].tolist() == expected.tolist()
    assert table.sum() == gt.size
    assert adjusted_rand_index(gt, pred) == pytest.approx(adjusted_rand_score(gt.ravel(), pred.ravel()), rel=1e-12)


def test_ari_with_labels_far_outside_0_30():
    rng = np.random.default_rng(3)
    gt = rng.choice(np.array([-4, 0, 70_000], np.int64), (4, 5, 6))
    pred = rng.choice(np.array([2**63 + 5, 0], np.uint64), (4, 5, 6))
    assert adjusted_rand_index(gt, pred) == pytest.approx(adjusted_rand_score(gt.ravel(), pred.ravel()), rel=1e-12)
    with pytest.raises(ValueError, match="integer"):
        adjusted_rand_index(gt.astype(float), gt)


# --- HD --------------------------------------------------------------------------------------


def test_hd_of_two_voxels_with_anisotropic_spacing():
    a, b = np.zeros((5, 5, 5), bool), np.zeros((5, 5, 5), bool)
    a[0, 0, 0] = True
    b[2, 1, 3] = True
    # (2·3 mm, 1·0.5 mm, 3·2 mm): sqrt(36 + 0.25 + 36) = sqrt(72.25) = 8.5
    spacing = (3.0, 0.5, 2.0)
    assert hausdorff_oar(b, a, spacing) == pytest.approx(8.5, abs=1e-12)
    assert score_oar(b, a, spacing)[1] == pytest.approx(8.5, abs=1e-12)  # one distance: HD95 = HD


def test_hd_sees_the_one_outlier_hd95_ignores():
    gt = np.zeros((8, 6, 12), bool)
    gt[2:4, 2:4, 2:4] = True  # 2x2x2 box: all 8 voxels are surface
    pred = gt.copy()
    pred[5, 2, 9] = True  # one stray voxel
    # nearest gt voxel (3, 2, 3): (2·2 mm, 0, 6·0.7 mm) → sqrt(16 + 17.64) = sqrt(33.64) = 5.8
    # pred's 9 distances are 8 zeros and 5.8; HD95 takes sorted[int(8·0.95)] = sorted[7] = 0
    spacing = (2.0, 1.5, 0.7)
    assert hausdorff_oar(pred, gt, spacing) == pytest.approx(5.8, abs=1e-12)
    assert score_oar(pred, gt, spacing)[1] == 0.0


def surface(mask: np.ndarray) -> np.ndarray:
    """The voxels HD95 measures from: those with a 6-neighbour outside the mask."""
    return mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(3, 1))


def blob(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    smooth = ndimage.gaussian_filter(rng.random(shape), 1.5)
    return smooth > np.quantile(smooth, 0.7)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spacing", [1.0, 2.5])
def test_hd_agrees_with_scikit_image(seed, spacing):
    # skimage's hausdorff_distance takes all nonzero voxels as the point sets, in voxel units:
    # given the surfaces, it is the same quantity; isotropic spacing s scales it by s
    rng = np.random.default_rng(seed)
    pred, gt = blob(rng, (12, 14, 16)), blob(rng, (12, 14, 16))
    expected = hausdorff_distance(surface(pred), surface(gt)) * spacing
    assert hausdorff_oar(pred, gt, (spacing,) * 3) == pytest.approx(expected, rel=1e-12)


def hd_of(score: Score) -> float:
    """The HD of a score computed with "hd" among its metrics."""
    assert isinstance(score, ExtraScore) and score.hd is not None
    return score.hd


@pytest.mark.parametrize("seed", range(4))
def test_hd_never_below_hd95(seed):
    rng = np.random.default_rng(seed)
    gt = np.zeros((12, 14, 16), np.uint8)
    pred = np.zeros_like(gt)
    for label in (1, 5, 9):
        gt[blob(rng, gt.shape) & (gt == 0)] = label
        pred[blob(rng, gt.shape) & (pred == 0)] = label
    gt[0:2, 0:2, 0:2] = 12  # annotated, never predicted
    pred[gt == 12] = 0
    present = np.zeros(31, bool)
    present[[0, 1, 5, 9, 12]] = True
    scores = score_case("c", pred, gt, present, (2.0, 0.7, 1.1), metrics=("dice", "hd95", "hd"))
    assert len(scores) == 4 and all(type(s) is ExtraScore and s.ari is None for s in scores)
    assert all(hd_of(s) >= s.hd95 for s in scores)
    assert any(hd_of(s) > s.hd95 for s in scores)
    missing = [s for s in scores if s.missing_pred]
    assert len(missing) == 1 and hd_of(missing[0]) == missing[0].hd95 == pytest.approx(
        np.linalg.norm([12 * 2.0, 14 * 0.7, 16 * 1.1])
    )


# --- the options and the outputs ----------------------------------------------------------------


def write_pair(root, case: str, gt: np.ndarray, pred: np.ndarray) -> None:
    for folder, arr in (("gt", gt), ("pred", pred)):
        (root / folder).mkdir(exist_ok=True)
        image = sitk.GetImageFromArray(arr)
        image.SetSpacing((0.5, 0.5, 2.0))
        sitk.WriteImage(image, str(root / folder / f"{case}_seg.nrrd"), True)


@pytest.fixture
def folders(tmp_path):
    gt = np.zeros((6, 10, 10), np.uint8)
    gt[1:4, 2:6, 2:6] = 5
    gt[2:5, 6:9, 5:9] = 9
    pred = gt.copy()
    pred[3, 2:6, 2:6] = 0
    pred[0, 0, 0] = 9
    write_pair(tmp_path, "case_01", gt, pred)
    write_pair(tmp_path, "case_02", gt, gt)
    return tmp_path


def test_default_outputs_have_no_new_keys(folders):
    scores = evaluate(folders / "pred", folders / "gt")
    assert scores and all(type(s) is Score for s in scores)
    assert all(list(dataclasses.asdict(s)) == BASE_FIELDS for s in scores)
    summary = write_outputs(scores, folders / "out")
    assert set(summary) == BASE_SUMMARY
    assert all(set(v) == {"dice", "hd95", "n"} for v in summary["per_oar"].values())
    assert set(json.loads((folders / "out/summary.json").read_text())) == BASE_SUMMARY
    with open(folders / "out/metrics.csv") as fh:
        assert next(csv.reader(fh)) == ["case", "oar", "dice", "hd95_mm", "missing_pred"]


def test_extra_metrics_reach_the_csv_and_the_summary(folders):
    metrics.main(
        ["--pred", str(folders / "pred"), "--gt", str(folders / "gt"), "--out", str(folders / "out"), "--metrics", *ALL]
    )
    with open(folders / "out/metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["case", "oar", "dice", "hd95_mm", "missing_pred", "hd_mm", "ari"]
    assert all(float(r["hd_mm"]) >= float(r["hd95_mm"]) for r in rows)
    summary = json.loads((folders / "out/summary.json").read_text())
    assert set(summary) == BASE_SUMMARY | {"mean_hd", "mean_ari", "per_case_ari"}
    assert summary["per_case_ari"]["case_02"] == 1.0
    assert 0 < summary["per_case_ari"]["case_01"] < 1
    assert summary["mean_ari"] == pytest.approx(np.mean(list(summary["per_case_ari"].values())))
    assert all("hd" in v for v in summary["per_oar"].values())


def test_mean_ari_is_over_cases_not_rows():
    rows: list[Score] = [ExtraScore("a", oar, 1.0, 0.0, False, ari=0.5) for oar in ("Brainstem", "Cochlea_L", "Lips")]
    rows.append(ExtraScore("b", "Brainstem", 1.0, 0.0, False, ari=1.0))
    summary = summarize(rows)
    assert summary["per_case_ari"] == {"a": 0.5, "b": 1.0} and summary["mean_ari"] == 0.75
    assert "mean_hd" not in summary


def test_unknown_metric_is_refused(folders):
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate(folders / "pred", folders / "gt", metrics=("dice", "hd99"))
    with pytest.raises(SystemExit):
        metrics.main(["--pred", "p", "--gt", "g", "--out", "o", "--metrics", "hd99"])
