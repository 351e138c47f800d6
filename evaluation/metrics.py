"""Challenge metrics per case and OAR: Dice and HD95 (mm, physical spacing).

    python -m evaluation.metrics --pred DIR --gt DIR --out DIR

``--pred``: label maps (``*.mha``, ``*.nrrd``, ``*.nii.gz``; e.g. the container's
``images/head_neck_oar``). ``--gt``: either label maps with the same case names (a ``_seg``
/ ``_CT`` suffix is ignored when matching) or the HaN-Seg raw layout (``case_XX/`` with
``*_OAR_<name>.seg.nrrd``). Writes ``metrics.csv`` (case, oar, dice, hd95), ``summary.json``
(mean per OAR and overall) and ``boxplot.png``.

The metric code is grand-challenge-metrics (evalutils ≥ 0.6), the code Grand-Challenge
evaluations run: ``dice_from_confusion_matrix`` and ``percentile_hausdorff_distance``.

Empty cases, decided once here:
* OAR absent from the ground truth (not annotated) → the pair is excluded (no row).
* OAR in the ground truth but absent from the prediction → Dice 0 and HD95 = the CT's
  diagonal in mm (the largest distance possible in the image), flagged ``missing_pred``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from grand_challenge_metrics.stats import (
    calculate_confusion_matrix,
    dice_from_confusion_matrix,
    percentile_hausdorff_distance,
)

from dataset.raw import find_raw_cases, label_map
from hanseg.errors import InputLayoutError
from hanseg.io import image_suffix, read_image
from hanseg.labels import LABEL_NAMES, NUM_CLASSES, OAR_NAMES

log = logging.getLogger("evaluation.metrics")


@dataclass(frozen=True)
class Score:
    case: str
    oar: str
    dice: float
    hd95: float
    missing_pred: bool


def _bbox_slices(mask: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + 1 + margin, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def score_oar(pred: np.ndarray, gt: np.ndarray, spacing_zyx: tuple[float, ...]) -> tuple[float, float]:
    """(Dice, HD95 mm) of two non-empty boolean masks. Computed inside their joint bounding
    box with a margin: the same numbers as on the full grid, much cheaper on a 1024² CT."""
    box = _bbox_slices(pred | gt)
    p, g = pred[box], gt[box]
    cm = calculate_confusion_matrix(g.astype(np.uint8), p.astype(np.uint8), [0, 1])
    dice = float(dice_from_confusion_matrix(cm)[1])
    hd95 = float(percentile_hausdorff_distance(p, g, 0.95, voxelspacing=spacing_zyx))
    return dice, hd95


def score_case(case: str, pred: np.ndarray, gt: np.ndarray, present: np.ndarray,
               spacing_zyx: tuple[float, ...]) -> list[Score]:
    """Scores for every OAR annotated in the case (``present[label]``)."""
    diagonal = float(np.linalg.norm(np.array(pred.shape) * np.array(spacing_zyx)))
    scores = []
    for label in range(1, NUM_CLASSES):
        g = gt == label
        if not present[label] or not g.any():
            continue
        p = pred == label
        if not p.any():
            scores.append(Score(case, LABEL_NAMES[label], 0.0, diagonal, True))
            continue
        scores.append(Score(case, LABEL_NAMES[label], *score_oar(p, g, spacing_zyx), False))
    return scores


def _key(path: Path) -> str:
    name = path.name[: len(path.name) - len(image_suffix(path) or "")]
    return re.sub(r"(_IMG)?(_seg|_CT)$", "", name)


def _pred_files(pred_dir: Path) -> dict[str, Path]:
    files = {_key(p): p for p in sorted(pred_dir.iterdir()) if image_suffix(p)}
    if not files:
        raise InputLayoutError(f"no predicted label maps in {pred_dir}")
    return files


def present_in(labels: np.ndarray) -> np.ndarray:
    """(31,) bool of the labels a label-map ground truth contains (background always): with
    no per-OAR files, an OAR absent from the map counts as not annotated."""
    present = np.bincount(labels.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES] > 0
    present[0] = True
    return present


def ground_truths(gt_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """case key → (label map z,y,x, present (31,) bool), from either layout."""
    out = {}
    if any(gt_dir.glob("case_*/case_*_IMG_CT.nrrd")):
        for case in find_raw_cases(gt_dir):
            out[case.case_id] = (label_map(case, read_image(case.ct)), case.present)
        return out
    for path in sorted(gt_dir.iterdir()):
        if image_suffix(path):
            arr = sitk.GetArrayFromImage(read_image(path))
            out[_key(path)] = (arr, present_in(arr))
    return out


def evaluate(pred_dir: Path, gt_dir: Path) -> list[Score]:
    preds, gts = _pred_files(pred_dir), ground_truths(gt_dir)
    unmatched = sorted(set(preds) ^ set(gts))
    if unmatched:
        log.warning("cases without a partner (skipped): %s", ", ".join(unmatched))
    scores = []
    for key in sorted(set(preds) & set(gts)):
        image = read_image(preds[key])
        gt, present = gts[key]
        pred = sitk.GetArrayFromImage(image)
        if pred.shape != gt.shape:
            raise InputLayoutError(f"{preds[key].name}: shape {pred.shape} differs from the ground truth {gt.shape}")
        scores += score_case(key, pred, gt, present, tuple(reversed(image.GetSpacing())))
        log.info("%s: %d OARs scored", key, sum(s.case == key for s in scores))
    return scores


def summarize(scores: list[Score]) -> dict:
    per_oar = {}
    for oar in OAR_NAMES:
        mine = [s for s in scores if s.oar == oar]
        if mine:
            per_oar[oar] = {"dice": float(np.mean([s.dice for s in mine])),
                            "hd95": float(np.mean([s.hd95 for s in mine])), "n": len(mine)}
    return {"cases": len({s.case for s in scores}),
            "mean_dice": float(np.mean([v["dice"] for v in per_oar.values()])) if per_oar else None,
            "mean_hd95": float(np.mean([v["hd95"] for v in per_oar.values()])) if per_oar else None,
            "min_oar_dice": min(((v["dice"], k) for k, v in per_oar.items()), default=None),
            "per_oar": per_oar}


def write_outputs(scores: list[Score], out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "oar", "dice", "hd95_mm", "missing_pred"])
        for s in scores:
            w.writerow([s.case, s.oar, f"{s.dice:.4f}", f"{s.hd95:.3f}", int(s.missing_pred)])
    summary = summarize(scores)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _boxplot(scores, out / "boxplot.png")
    return summary


def _boxplot(scores: list[Score], path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no box plot")
        return
    oars = [o for o in OAR_NAMES if any(s.oar == o for s in scores)]
    fig, ax = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    for a, metric, label in ((ax[0], "dice", "Dice"), (ax[1], "hd95", "HD95 (mm)")):
        a.boxplot([[getattr(s, metric) for s in scores if s.oar == o] for o in oars])
        a.set_ylabel(label)
    ax[1].set_xticks(range(1, len(oars) + 1), oars, rotation=90)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Dice and HD95 per case and OAR.")
    ap.add_argument("--pred", type=Path, required=True)
    ap.add_argument("--gt", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    summary = write_outputs(evaluate(args.pred, args.gt), args.out)
    log.info("%d cases: mean Dice %.3f, mean HD95 %.2f mm, lowest OAR %s", summary["cases"],
             summary["mean_dice"] or 0, summary["mean_hd95"] or 0, summary["min_oar_dice"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
