"""Challenge metrics per case and OAR: Dice and HD95 (mm, physical spacing); optionally HD and ARI.

    python -m evaluation.metrics --pred DIR --gt DIR --out DIR [--metrics dice hd95 hd ari]

``--pred``: label maps (``*.mha``, ``*.nrrd``, ``*.nii.gz``; e.g. the container's
``images/head_neck_oar``). ``--gt``: either label maps with the same case names (a ``_seg``
/ ``_CT`` suffix is ignored when matching) or the HaN-Seg raw layout (``case_XX/`` with
``*_OAR_<name>.seg.nrrd``). Writes ``metrics.csv`` (case, oar, dice, hd95), ``summary.json``
(mean per OAR and overall) and ``boxplot.png``.

The metric code is grand-challenge-metrics (evalutils ≥ 0.6), the code Grand-Challenge
evaluations run: ``dice_from_confusion_matrix`` and ``percentile_hausdorff_distance``.

Optional (``--metrics``, or ``metrics=`` on ``evaluate``/``score_case``; off by default, so the
default outputs are unchanged):
* ``hd``: the 3D Hausdorff distance per OAR (mm), ``percentile_hausdorff_distance`` at the 100th
  percentile on the same cropped masks as HD95, so HD ≥ HD95 always; a ``missing_pred`` pair
  gets the diagonal for both. Costs a second pair of distance transforms per OAR.
* ``ari``: the adjusted Rand index (Hubert & Arabie 1985) of the whole label map per case (all
  voxels, background included), from the contingency table in exact integers. It is a case
  value: the same on every row of the case; ``summary.json`` has it per case and its mean.
They add the columns ``hd_mm`` / ``ari`` to ``metrics.csv`` and ``per_oar.*.hd``, ``mean_hd``,
``mean_ari``, ``per_case_ari`` to ``summary.json``, each only when asked for.

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
from collections.abc import Iterable
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


@dataclass(frozen=True)
class ExtraScore(Score):
    """A Score with the optional metrics: a subclass, so that a default run's Score objects
    (and their ``asdict``) keep exactly the fields they had."""

    hd: float | None = None
    ari: float | None = None


#: The positional fields of a :class:`Score`: case, OAR, Dice, HD95, missing_pred.
ScoreFields = tuple[str, str, float, float, bool]

METRICS = ("dice", "hd95", "hd", "ari")
DEFAULT_METRICS = ("dice", "hd95")
_CHUNK = 1 << 22  # voxels per bincount: 32 MiB of int64 indices at a time
_MAX_DENSE_LABELS = 1024  # above this, labels are renumbered before the contingency table


def extra_metrics(metrics: Iterable[str]) -> frozenset[str]:
    """The optional metrics asked for. Dice and HD95 are always computed (the challenge's
    metrics, and the fields every Score has), so only ``hd`` and ``ari`` switch anything."""
    chosen = set(metrics)
    unknown = chosen - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}")
    return frozenset(chosen - set(DEFAULT_METRICS))


def _dense_labels(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """(labels, number of label values) with labels usable as bincount indices: HaN-Seg maps
    (0..30) pass as they are; others are renumbered, which leaves the ARI unchanged."""
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"label maps must be integer, not {labels.dtype}")
    if labels.size == 0:
        return labels.ravel(), 1
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= _MAX_DENSE_LABELS:
        values, inverse = np.unique(labels, return_inverse=True)
        return inverse.ravel(), len(values)
    return labels.ravel(), hi + 1


def contingency_table(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n_a, n_b) int64 voxel counts with label i in ``a`` and j in ``b``. Chunked so that a
    1024²×300 CT never needs an int64 copy of the whole map (2.5 GB)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    (a, n_a), (b, n_b) = _dense_labels(a), _dense_labels(b)
    table = np.zeros(n_a * n_b, np.int64)
    for start in range(0, a.size, _CHUNK):
        stop = start + _CHUNK
        # both as int64: numpy makes int64 + uint64 a float64
        idx = a[start:stop].astype(np.int64) * n_b + b[start:stop].astype(np.int64)
        table += np.bincount(idx, minlength=n_a * n_b)
    return table.reshape(n_a, n_b)


def _pairs(counts: np.ndarray) -> int:
    """Σ C(n, 2) over counts, in Python ints: exact however many voxels there are."""
    return sum(int(n) * (int(n) - 1) // 2 for n in counts[counts > 1])


def adjusted_rand_index(gt: np.ndarray, pred: np.ndarray) -> float:
    """ARI (Hubert & Arabie 1985) of two label maps over all voxels: a chance-corrected
    agreement of the whole partition, background included, that needs no per-OAR matching.

    With I = Σ C(n_ij, 2), A = Σ C(a_i, 2), B = Σ C(b_j, 2), N = C(n, 2):
    ARI = (I - AB/N) / ((A+B)/2 - AB/N) = (2NI - 2AB) / (N(A+B) - 2AB), integers until the one
    final (correctly rounded) division. The denominator is 0 only when both maps are one
    label (A = B = N) or all singletons (A = B = 0), i.e. identical: 1.0, as scikit-learn."""
    table = contingency_table(gt, pred)
    index = _pairs(table.ravel())
    a, b = _pairs(table.sum(1)), _pairs(table.sum(0))
    n = _pairs(np.array([table.sum()]))
    denominator = n * (a + b) - 2 * a * b
    if denominator == 0:
        return 1.0
    return (2 * n * index - 2 * a * b) / denominator


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
    hd95 = _surface_percentile(p, g, spacing_zyx, 0.95)
    return dice, hd95


def _surface_percentile(p: np.ndarray, g: np.ndarray, spacing_zyx: tuple[float, ...], percentile: float) -> float:
    """A percentile (0..1) of the symmetric surface distances in mm: the one code path of HD95
    and HD, so that they share the surfaces, the distances and the indexing (HD ≥ HD95)."""
    return float(percentile_hausdorff_distance(p, g, percentile, voxelspacing=spacing_zyx))


def hausdorff_oar(pred: np.ndarray, gt: np.ndarray, spacing_zyx: tuple[float, ...]) -> float:
    """HD (mm) of two non-empty boolean masks: the 100th percentile where HD95 is the 95th,
    on the same bounding-box crop as ``score_oar``."""
    box = _bbox_slices(pred | gt)
    return _surface_percentile(pred[box], gt[box], spacing_zyx, 1.0)


def score_case(
    case: str,
    pred: np.ndarray,
    gt: np.ndarray,
    present: np.ndarray,
    spacing_zyx: tuple[float, ...],
    metrics: Iterable[str] = DEFAULT_METRICS,
) -> list[Score]:
    """Scores for every OAR annotated in the case (``present[label]``); with ``hd`` or ``ari``
    in ``metrics`` they are ExtraScores, otherwise plain Scores exactly as before."""
    extras = extra_metrics(metrics)
    ari = adjusted_rand_index(gt, pred) if "ari" in extras else None
    diagonal = float(np.linalg.norm(np.array(pred.shape) * np.array(spacing_zyx)))
    scores = []
    for label in range(1, NUM_CLASSES):
        g = gt == label
        if not present[label] or not g.any():
            continue
        p = pred == label
        if not p.any():
            fields: ScoreFields = (case, LABEL_NAMES[label], 0.0, diagonal, True)
            hd: float | None = diagonal
        else:
            fields, hd = (case, LABEL_NAMES[label], *score_oar(p, g, spacing_zyx), False), None
            if "hd" in extras:
                hd = hausdorff_oar(p, g, spacing_zyx)
        scores.append(_with_extras(fields, extras, hd, ari))
    return scores


def _with_extras(fields: ScoreFields, extras: frozenset[str], hd: float | None, ari: float | None) -> Score:
    """A plain Score when no optional metric is on (the default output unchanged), else an
    ExtraScore carrying only the metrics asked for (the others None)."""
    if not extras:
        return Score(*fields)
    return ExtraScore(*fields, hd=hd if "hd" in extras else None, ari=ari)


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


def evaluate(pred_dir: Path, gt_dir: Path, metrics: Iterable[str] = DEFAULT_METRICS) -> list[Score]:
    """Scores of every case found in both folders; ``metrics`` as in ``score_case``."""
    metrics = tuple(metrics)
    extra_metrics(metrics)  # unknown names fail before any image is read
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
        scores += score_case(key, pred, gt, present, tuple(reversed(image.GetSpacing())), metrics)
        log.info("%s: %d OARs scored", key, sum(s.case == key for s in scores))
    return scores


def _extra(score: Score, name: str) -> float | None:
    """An optional metric of a score, None where it was not computed (a plain Score)."""
    return getattr(score, name, None)


def summarize(scores: list[Score]) -> dict:
    per_oar = {}
    for oar in OAR_NAMES:
        mine = [s for s in scores if s.oar == oar]
        if mine:
            per_oar[oar] = {
                "dice": float(np.mean([s.dice for s in mine])),
                "hd95": float(np.mean([s.hd95 for s in mine])),
                "n": len(mine),
            }
            hds = [hd for s in mine if (hd := _extra(s, "hd")) is not None]
            if hds:
                per_oar[oar]["hd"] = float(np.mean(hds))
    summary = {
        "cases": len({s.case for s in scores}),
        "mean_dice": float(np.mean([v["dice"] for v in per_oar.values()])) if per_oar else None,
        "mean_hd95": float(np.mean([v["hd95"] for v in per_oar.values()])) if per_oar else None,
        "min_oar_dice": min(((v["dice"], k) for k, v in per_oar.items()), default=None),
        "per_oar": per_oar,
    }
    return {**summary, **_summarize_extras(scores, per_oar)}


def _summarize_extras(scores: list[Score], per_oar: dict) -> dict:
    """The summary keys of the optional metrics, only those computed (none by default): mean
    HD over OARs like mean_hd95, and ARI per case (a case value, so averaged over cases)."""
    out: dict[str, float | dict[str, float]] = {}
    if any("hd" in v for v in per_oar.values()):
        out["mean_hd"] = float(np.mean([v["hd"] for v in per_oar.values() if "hd" in v]))
    per_case = {s.case: ari for s in scores if (ari := _extra(s, "ari")) is not None}
    if per_case:
        out["mean_ari"] = float(np.mean(list(per_case.values())))
        out["per_case_ari"] = per_case
    return out


def write_outputs(scores: list[Score], out: Path) -> dict:
    """metrics.csv, summary.json and boxplot.png; the hd_mm / ari columns only where computed."""
    out.mkdir(parents=True, exist_ok=True)
    extras = [name for name in ("hd", "ari") if any(_extra(s, name) is not None for s in scores)]
    with open(out / "metrics.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["case", "oar", "dice", "hd95_mm", "missing_pred"]
            + [{"hd": "hd_mm", "ari": "ari"}[name] for name in extras]
        )
        for s in scores:
            w.writerow(
                [s.case, s.oar, f"{s.dice:.4f}", f"{s.hd95:.3f}", int(s.missing_pred)]
                + [_format_extra(_extra(s, name), name) for name in extras]
            )
    summary = summarize(scores)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _boxplot(scores, out / "boxplot.png")
    return summary


def _format_extra(value: float | None, name: str) -> str:
    """HD to 3 decimals like HD95; ARI to 6 (it sits near 1 when background dominates)."""
    if value is None:
        return ""
    return f"{value:.3f}" if name == "hd" else f"{value:.6f}"


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
    ap = argparse.ArgumentParser(description="Dice and HD95 per case and OAR (optionally HD and ARI).")
    ap.add_argument("--pred", type=Path, required=True)
    ap.add_argument("--gt", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--metrics",
        nargs="+",
        choices=METRICS,
        default=list(DEFAULT_METRICS),
        help="metrics to report (default: dice hd95); hd: Hausdorff distance per OAR, "
        "ari: adjusted Rand index per case. Dice and HD95 are always reported.",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not set(DEFAULT_METRICS) <= set(args.metrics):
        log.info("dice and hd95 are always reported (the challenge metrics)")
    summary = write_outputs(evaluate(args.pred, args.gt, args.metrics), args.out)
    log.info(
        "%d cases: mean Dice %.3f, mean HD95 %.2f mm, lowest OAR %s",
        summary["cases"],
        summary["mean_dice"] or 0,
        summary["mean_hd95"] or 0,
        summary["min_oar_dice"],
    )
    if "mean_hd" in summary:
        log.info("mean HD %.2f mm", summary["mean_hd"])
    if "mean_ari" in summary:
        log.info("mean ARI %.6f", summary["mean_ari"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
